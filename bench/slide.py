"""SLIDE vs a dense PyTorch output layer on synthetic extreme classification, in one run.

For each shape (100K labels; Amazon-670K's 670,091 labels x 135,909 features) the same network
(sparse features -> 128 hidden -> output) is trained with a dense output layer (full softmax,
torch.optim.Adam) and with the SLIDE layer (LSH active set + labels, lazy row Adam), each in its
own subprocess so that peak memory (max RSS) is per model. Reported: median time per training
step, time per epoch, P@1/P@5 after equal epochs and - SLIDE trained on for as long as dense
took - after equal wall time; hash-table memory beside the layer's weights.

    python bench/slide.py                 # both shapes, ~10 minutes on 2 shared cores
    python bench/slide.py --quick         # small shapes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time


def run_one(job: dict) -> dict:
    import numpy as np
    import torch

    from thrifty_lsh.synthetic import generate
    from thrifty_lsh.train import TrainConfig, Trainer

    torch.set_num_threads(job["threads"])
    common = dict(n_features=job["features"], n_labels=job["labels"], labels_per_point=5.45,
                  features_per_point=75.7, structure_seed=0)
    train = generate(job["n_train"], seed=1, **common)
    test = generate(job["n_test"], seed=2, **common)
    cfg = TrainConfig(layer=job["layer"], hidden=128, batch_size=job["batch"], lr=job["lr"],
                      epochs=job["max_epochs"], eval_every=10**9, eval_points=job["n_test"],
                      slide=job["slide"] if job["layer"] == "slide" else {})
    trainer = Trainer(cfg, job["features"], job["labels"])
    step_times, epochs = [], []
    orig_step = trainer.step

    def timed(batch):
        t0 = time.perf_counter()
        out = orig_step(batch)
        step_times.append(time.perf_counter() - t0)
        return out

    trainer.step = timed
    for epoch in range(job["max_epochs"]):
        cfg.epochs = epoch + 1
        trainer.run(train, test)
        ev = trainer.evaluate(test)
        epochs.append({"epoch": epoch + 1, "seconds": trainer.train_seconds, **ev})
        if epoch + 1 >= job["epochs"] and trainer.train_seconds >= job.get("until_seconds", 0):
            break
    out = trainer.net.output
    result = {"layer": job["layer"], "labels": job["labels"],
              "step_median_s": float(np.median(step_times)),
              "step_p90_s": float(np.quantile(step_times, 0.9)), "steps": len(step_times),
              "epochs": epochs, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
              / 1024, "weight_mb": (out.weight.numel() + out.bias.numel()) * 4 / 2**20}
    if job["layer"] == "slide":
        result.update(table_mb=out.table_bytes() / 2**20, refills=out.refills,
                      rebuilds=out.rebuilds, active_mean=out.work_fraction * job["labels"])
    return result


def in_subprocess(job: dict) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_one, (job,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--plot", help="write P@1-vs-time curves (PNG) here")
    ap.add_argument("--only", choices=["100k", "amazon-670k"], help="run one shape only")
    ap.add_argument("--epochs", type=int, default=None,
                    help="equal epochs for both layers (default: 2 at 100k, 1 at amazon-670k)")
    args = ap.parse_args()
    slide = {"family": "simhash", "k": 10, "l": 16, "bucket_size": 128, "budget": 4096,
             "refill_every": 6400, "rebuild_every": 128_000}
    shapes = [("100k", 20_000, 100_000, 8192, 2), ("amazon-670k", 135_909, 670_091, 4096, 1)]
    if args.quick:
        shapes = [("quick", 2000, 5000, 1024, 1)]
    shapes = [(n, f, lab, pts, args.epochs or ep) for n, f, lab, pts, ep in shapes
              if args.only in (None, n)]
    import torch

    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, {time.strftime('%Y-%m-%d')}")
    results = []
    for name, feats, labels, n_train, epochs in shapes:
        base = dict(features=feats, labels=labels, n_train=n_train, n_test=500, batch=256,
                    lr=1e-3, threads=args.threads, epochs=epochs, slide=slide)
        dense = in_subprocess({**base, "layer": "dense", "max_epochs": epochs})
        sparse = in_subprocess({**base, "layer": "slide", "max_epochs": 12 * epochs,
                                "until_seconds": dense["epochs"][-1]["seconds"]})
        results.append({"shape": name, "dense": dense, "slide": sparse})
        d_eq, s_eq = dense["epochs"][epochs - 1], sparse["epochs"][epochs - 1]
        s_wall = [e for e in sparse["epochs"] if e["seconds"] <= d_eq["seconds"] * 1.05]
        s_wall = s_wall[-1] if s_wall else s_eq
        print(f"\n## {name}: {labels} labels, {feats} features, {n_train} train points")
        print(f"time/step  dense {dense['step_median_s']*1e3:.0f} ms   slide "
              f"{sparse['step_median_s']*1e3:.0f} ms   speed-up "
              f"{dense['step_median_s']/sparse['step_median_s']:.1f}x (medians of "
              f"{dense['steps']} and {sparse['steps']} steps)")
        print(f"time/epoch dense {d_eq['seconds']/epochs:.1f} s   slide "
              f"{s_eq['seconds']/epochs:.1f} s")
        print(f"equal epochs ({epochs}): P@1 dense {d_eq['p1']:.4f} slide {s_eq['p1']:.4f} "
              f"(diff {100*(s_eq['p1']-d_eq['p1']):+.2f} points); P@5 dense {d_eq['p5']:.4f} "
              f"slide {s_eq['p5']:.4f}")
        print(f"equal wall time ({d_eq['seconds']:.0f} s): slide after {s_wall['epoch']} epochs "
              f"P@1 {s_wall['p1']:.4f} P@5 {s_wall['p5']:.4f}")
        print(f"peak RSS dense {dense['max_rss_mb']:.0f} MB, slide {sparse['max_rss_mb']:.0f} MB; "
              f"output weights {sparse['weight_mb']:.0f} MB, hash tables "
              f"{sparse['table_mb']:.1f} MB ({sparse['table_mb']/sparse['weight_mb']:.2f} of "
              f"weights); mean active neurons {sparse['active_mean']:.0f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4))
        for ax, r in zip(axes if len(results) > 1 else [axes], results):
            for key in ("dense", "slide"):
                e = r[key]["epochs"]
                ax.plot([0] + [x["seconds"] for x in e], [0] + [x["p1"] for x in e], "o-",
                        label=key)
            ax.set(title=r["shape"], xlabel="training seconds", ylabel="P@1")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


if __name__ == "__main__":
    main()
