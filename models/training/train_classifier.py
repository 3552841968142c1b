"""Train, export and evaluate the RadSight demo nodule-type classifier (CPU).

    python -m models.training.train_classifier --out models/radsight-demo-nodule-classifier

Classes 0 solid, 1 part-solid, 2 ground-glass (ground-truth `kind` of viewer.demo nodules).
Input: a crop_mm [32, 32, 32] crop at 1 mm isotropic after reorient/resample/window, prepared
exactly like the engine's classify() (models/training/common.py classifier_crop). Training
crops: nodule centres jittered by up to +-2 mm per axis, plus random flips and axial 90-degree
rotations. Held-out crops: the exact ground-truth centres of the test seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.training import common
from models.training.nets import NoduleClassifier

MODEL_ID = "radsight-demo-nodule-classifier"
NAMES = ("Solid nodule", "Part-solid nodule", "Ground-glass nodule")
COLORS = ([0.9, 0.9, 0.2], [1.0, 0.6, 0.1], [0.4, 0.7, 1.0])
TARGET_LAYER = "features.conv4"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jitters", type=int, default=6, help="jittered crops per nodule and visit")
    p.add_argument("--crop-mm", type=float, nargs=3, default=[32.0, 32.0, 32.0])
    p.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0])
    p.add_argument("--train-small", type=int, nargs=2, default=[100, 140], metavar=("FIRST", "STOP"))
    p.add_argument("--train-demo", type=int, nargs=2, default=[150, 153], metavar=("FIRST", "STOP"))
    p.add_argument("--test-small", type=int, nargs=2, default=[200, 210], metavar=("FIRST", "STOP"))
    p.add_argument("--test-demo", type=int, nargs=2, default=[250, 252], metavar=("FIRST", "STOP"))
    return p.parse_args()


def crops(preset, seeds, args, jitters, rng):
    xs, ys, sizes = [], [], []
    for seed in range(*seeds):
        for visit in common.study(preset, seed):
            ct, _ = common.load_visit(visit)
            for nod in visit["nodules"]:
                if not nod["present"]:
                    continue
                centre = np.asarray(nod["centre_lps_mm"], float)
                offsets = [np.zeros(3)] + [rng.uniform(-2, 2, 3) for _ in range(jitters)]
                for off in offsets:
                    xs.append(common.classifier_crop(ct, centre + off, args.crop_mm, args.spacing))
                    ys.append(common.KINDS.index(nod["kind"]))
                    sizes.append((6 * nod["volume_mm3"] / np.pi) ** (1 / 3))
    return np.stack(xs), np.array(ys), np.array(sizes)


def augment(x: np.ndarray, rng) -> np.ndarray:
    """x (z, y, x): random flips on every axis and a random axial 90-degree rotation."""
    for axis in range(3):
        if rng.random() < 0.5:
            x = np.flip(x, axis)
    x = np.rot90(x, rng.integers(4), axes=(1, 2))
    return np.ascontiguousarray(x)


def train(args):
    common.seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    xs, ys, _ = [], [], None
    for preset, seeds in (("small", args.train_small), ("demo", args.train_demo)):
        x, y, _ = crops(preset, seeds, args, args.jitters, rng)
        xs.append(x)
        ys.append(y)
    x_train, y_train = np.concatenate(xs), np.concatenate(ys)
    counts = np.bincount(y_train, minlength=3)
    print(f"{len(y_train)} training crops {counts.tolist()} in {time.time() - t0:.0f} s", flush=True)
    # class-balanced sampling
    p = (1.0 / counts)[y_train]
    p /= p.sum()
    model = NoduleClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.iters, pct_start=0.1)
    t1 = time.time()
    running = None
    for it in range(args.iters):
        idx = rng.choice(len(y_train), args.batch, p=p)
        xb = torch.from_numpy(np.stack([augment(x_train[i], rng) for i in idx]))[:, None]
        xb = xb * torch.from_numpy(rng.uniform(0.95, 1.05, (args.batch, 1, 1, 1, 1)).astype(np.float32))
        yb = torch.from_numpy(y_train[idx])
        model.train()
        loss = F.cross_entropy(model(xb), yb, label_smoothing=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if it % 25 == 0 or it == args.iters - 1:
            print(f"iter {it} loss {running:.4f} {time.time() - t1:.0f} s", flush=True)
    train_s = time.time() - t1
    model.eval()
    return model, counts, train_s


def export(model, out: Path, size):
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    dummy = torch.zeros(1, 1, *size)
    torch.onnx.export(model, dummy, str(path), dynamo=False, opset_version=17, input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    import onnx
    import onnxruntime as ort

    conv_nodes = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(4, 1, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(["logits"], {"image": x.numpy()})[0]
    diff = float(np.abs(ref - got).max())
    print(f"onnxruntime vs torch max abs diff {diff:.2e}; conv nodes {conv_nodes}", flush=True)
    assert diff < 1e-4, diff
    return diff, conv_nodes[-1]


def write_card(out: Path, args, size, metrics, training, onnx_node):
    card = {
        "id": MODEL_ID, "version": "1.0.0", "name": "RadSight demo nodule type classifier",
        "task": "classification", "file": "model.onnx",
        "sha256": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest(),
        "intended_use": "Demonstration on synthetic data only; not for clinical use.",
        "limitations": ("Trained only on RadSight's synthetic phantom nodules (viewer.demo), whose three types "
                        "differ mainly in attenuation. Untested on real CT; will not generalise to real "
                        "patients. Expects the crop centred on a nodule; outputs one of three types even "
                        "when there is no nodule."),
        "modality": ["CT"], "body_part": ["CHEST"],
        "input": {"name": "image", "axes": "NCDHW", "channels": 1, "spatial_size": list(size)},
        "crop_mm": list(args.crop_mm),
        "preprocessing": [{"name": "reorient", "to": "LPS"},
                          {"name": "resample", "spacing_mm": list(args.spacing)},
                          {"name": "window", "low": -1000, "high": 400, "out_low": 0.0, "out_high": 1.0}],
        "output": {"name": "logits", "kind": "logits", "activation": "softmax",
                   "labels": [{"value": n, "name": name, "color": COLORS[n]} for n, name in enumerate(NAMES)]},
        "explain": {"target_layer": onnx_node, "method": "gradcam", "target_output": f"{onnx_node}_output_0",
                    "torch_module": TARGET_LAYER,
                    "note": (f"Last convolution. In the ONNX graph BatchNorm bn4 is folded into {onnx_node}, "
                             "so its output equals torch features.bn4's; it is followed by ReLU "
                             "/features/relu4/Relu (torch features.relu4), global average pooling and /fc/Gemm.")},
        "training": {**training, "metrics": metrics},
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    from viewer.inference.card import ModelCard

    ModelCard.from_file(out / "card.json").verify_file()


def evaluate(out: Path, args) -> dict:
    """Held-out: the ground-truth centre of every present nodule of the test seeds, classified by
    RadSight's engine (viewer.inference.run.classify, ONNX Runtime CPU)."""
    from viewer.inference.card import ModelCard
    from viewer.inference.run import classify
    from viewer.inference.session import ModelSession

    card = ModelCard.from_file(out / "card.json")
    card.verify_file()
    session = ModelSession(card, "cpu", threads=args.threads)
    results = {}
    for preset, seeds in (("small", args.test_small), ("demo", args.test_demo)):
        cm = np.zeros((3, 3), int)
        by_size = {"lt6mm": [0, 0], "ge6mm": [0, 0]}
        for seed in range(*seeds):
            for visit in common.study(preset, seed):
                ct, _ = common.load_visit(visit)
                for nod in visit["nodules"]:
                    if not nod["present"]:
                        continue
                    res = classify(ct, card, nod["centre_lps_mm"], session)
                    pred = int(np.argmax(res.probabilities))
                    truth = common.KINDS.index(nod["kind"])
                    cm[truth, pred] += 1
                    d = (6 * nod["volume_mm3"] / np.pi) ** (1 / 3)
                    key = "lt6mm" if d < 6 else "ge6mm"
                    by_size[key][0] += pred == truth
                    by_size[key][1] += 1
        results[preset] = {
            "seeds": list(range(*seeds)), "crops": int(cm.sum()),
            "accuracy": round(float(np.trace(cm) / max(cm.sum(), 1)), 4),
            "balanced_accuracy": round(float(np.mean([cm[i, i] / max(cm[i].sum(), 1) for i in range(3)])), 4),
            "confusion_matrix_rows_truth_cols_pred": cm.tolist(),
            "accuracy_by_diameter": {k: (round(a / b, 4) if b else None, b) for k, (a, b) in by_size.items()},
        }
        print(preset, json.dumps(results[preset]), flush=True)
    results["classes"] = list(common.KINDS)
    return results


def main():
    args = parse_args()
    size = [int(round(c / s)) for c, s in zip(args.crop_mm[::-1], args.spacing[::-1])]
    model, counts, train_s = train(args)
    diff, node = export(model, args.out, size)
    training = {
        "data": (f"Synthetic CT from viewer.demo.generate_demo: preset 'small' seeds {args.train_small[0]}-"
                 f"{args.train_small[1] - 1} and 'demo' seeds {args.train_demo[0]}-{args.train_demo[1] - 1}, "
                 f"3 visits each; every present nodule, centre + {args.jitters} jittered (+-2 mm) crops; "
                 f"{int(counts.sum())} crops, per class {counts.tolist()}. Held-out: 'small' seeds "
                 f"{args.test_small[0]}-{args.test_small[1] - 1}, 'demo' seeds {args.test_demo[0]}-{args.test_demo[1] - 1}."),
        "recipe": (f"3-D CNN (conv 16-32-64-64, BatchNorm, ReLU, max-pool, global average pool, linear), "
                   f"{args.iters} iterations of batch {args.batch}, class-balanced sampling, flips + axial "
                   f"rot90 + intensity scale, AdamW lr {args.lr} one-cycle, label smoothing 0.05, seed "
                   f"{args.seed}, {args.threads} CPU thread(s), {train_s / 60:.1f} min."),
        "onnx_vs_torch_max_abs_diff": diff,
    }
    write_card(args.out, args, size, {}, training, node)
    metrics = evaluate(args.out, args)
    write_card(args.out, args, size, metrics, training, node)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
