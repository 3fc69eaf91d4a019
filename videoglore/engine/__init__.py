"""Training, testing, checkpoints and logs.

    trainer.train(cfg) -> dict                      run or resume cfg.output.dir (torchrun-aware)
    tester.test(cfg, checkpoint=None) -> dict       K clips × C crops per video → metrics + files
    tester.predict(videos, checkpoint, topk, device) top-k (label, probability) per video file
    checkpoint                                      the one checkpoint writer/reader (atomic)
    metrics                                         aggregate_views, topk_accuracy, ... (pure)
    optim                                           SGD + per-iteration warmup/step/cosine lr
    distributed                                     process group, device, autocast helpers
    run_log                                         log.jsonl, TensorBoard, curves.png

Modules are imported where used so that ``import videoglore.engine`` stays light.
"""
