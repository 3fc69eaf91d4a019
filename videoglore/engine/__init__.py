"""Training, testing, checkpoints and logs.

    trainer.train(cfg) -> dict               run lock, build or resume, fit (torchrun-aware)
    run.build_run(cfg, rt) -> Run            model, loaders, optimizer, schedule, resumed state
    trainer.fit(run)                         epochs: train_one_epoch, precise BN, evaluate,
                                             checkpoint
    step.sgd_step(run, clips, labels, where) the one optimizer step (training and precise BN)
    precise_bn.run_precise_bn(run, batches)  the released end-of-epoch BatchNorm update
    tester.test(cfg, checkpoint=None)        K clips × C crops per video → metrics + files
    inference.predict(videos, checkpoint)    top-k labels per video file (a bad file: its error)
    forward                                  the one normalize → autocast → forward; fast path;
                                             forward_views (test views in chunks), place_model
    checkpoint                               the one checkpoint writer/reader; payload/restore
    scoring, results, plots                  test scores and metrics, result files, every plot
    metrics                                  aggregate_views, topk_accuracy, ... (pure)
    optim                                    SGD + per-iteration warmup/step/cosine lr
    distributed                              the one device selector, process group, collectives
    meter, run_log, run_lock                 speed/ETA and progress bars, log.jsonl + TensorBoard,
                                             one trainer per run
    stops                                    SIGTERM and a lost rank end a run in one line

Modules are imported where used so that ``import videoglore.engine`` stays light.
"""
