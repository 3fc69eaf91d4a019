"""Dataset preparation: raw videos + annotations → clean lists (see ``prepare``)."""
