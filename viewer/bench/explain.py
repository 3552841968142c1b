"""Explanation benchmark: the class activation map the bundled nodule classifier's card names
(Grad-CAM or a variant at its layer) against one forward pass of the same classifier through ONNX
Runtime, on the same crop, in one run (goal: < 3x a forward pass). The map as `explain` runs it (one
ONNX Runtime pass that also returns the layer's activation, backward through the twin's head) and
on the whole torch twin (the path for graphs with skip connections past the layer); occlusion, many
forward passes, for scale. The forward pass is timed on the model's own session and on the
non-spinning session the map uses; the ratio is against the faster of the two, so that a slow
forward pass on a busy machine cannot flatter the map.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from viewer.bench.timing import median_seconds

CLASSIFIER = "radsight-demo-nodule-classifier"


def run_explain_benchmark(repeats: int = 20, threads: int = 2, log: Callable[[str], None] = print) -> dict:
    import torch

    from viewer.demo import generate_demo
    from viewer.dicom import load
    from viewer.inference.explain import explain, fine_layer, gradcam, gradcam_on_onnx_activation, occlusion
    from viewer.inference.registry import discover
    from viewer.inference.run import as_batch, classifier_input, classify
    from viewer.inference.session import ModelSession
    from viewer.inference.torch_twin import layer_grid, model_layout, target_layer, torch_twin, with_layer_output

    torch.set_num_threads(threads)
    card = discover().get(CLASSIFIER)
    session = ModelSession(card, "cpu", threads)
    twin = torch_twin(card)
    layer_name, layer = target_layer(twin, card)
    method = card.explain.get("cam", "gradcam")  # the map the card names (chosen by the pointing game)
    grid = layer_grid(twin, layer_name, 3)
    fine = fine_layer(twin, card)  # the card's map may multiply a finer layer's
    with tempfile.TemporaryDirectory() as tmp:
        log("generating a synthetic study")
        demo = generate_demo(Path(tmp), preset="small", n_visits=1, seed=77)
        volume = load(demo.visits[0].study_dir)
        point = next(n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"])["centre_lps_mm"]
    batch = as_batch(classifier_input(volume, card, point), card)
    target = int(np.argmax(session.predict(batch)[0]))
    inputs, shape = model_layout(batch, card), batch.shape[2:]

    def used():
        return gradcam_on_onnx_activation(card, twin, layer_name, batch, target, session, method, grid, fine)

    def whole_twin():
        return gradcam(twin, layer, inputs, target, shape, method, grid, fine=fine and fine[1:])

    for _ in range(3):  # warm-up: first calls allocate
        session.predict(batch)
        used()
        whole_twin()
    log(f"timing {repeats} repeats on a {'x'.join(map(str, batch.shape[2:]))} crop, {threads} threads")
    layered, _ = with_layer_output(card, fine[0] if fine else layer_name, session.provider, threads)
    forward_own = median_seconds(lambda: session.predict(batch), repeats)
    forward_quiet = median_seconds(lambda: layered.run([session.output_name], {session.input.name: inputs}), repeats)
    forward = min(forward_own, forward_quiet)
    cam = median_seconds(used, repeats)
    whole = median_seconds(whole_twin, repeats)
    occ = median_seconds(lambda: occlusion(session, batch, target, card), max(repeats // 10, 3))
    classify_s = median_seconds(lambda: classify(volume, card, point, session=session), repeats)
    explain_s = median_seconds(lambda: explain(volume, card, point, method=method, session=session), repeats)
    report = {"model": f"{card.id} {card.version}", "map": f"{method} at {layer_name}" + (f" x {fine[0]}" if fine else ""), "crop": list(batch.shape[2:]), "threads": threads,
              "repeats": repeats, "forward_onnxruntime_s": forward, "forward_model_session_s": forward_own,
              "forward_no_spinning_s": forward_quiet, "gradcam_s": cam, "occlusion_s": occ,
              "gradcam_vs_forward": cam / forward, "gradcam_whole_twin_s": whole,
              "gradcam_whole_twin_vs_forward": whole / forward, "occlusion_vs_forward": occ / forward,
              "classify_s": classify_s, "explain_s": explain_s, "explain_vs_classify": explain_s / classify_s,
              "goal": "the card's map < 3x one forward pass"}
    report["text"] = "\n".join([
        f"Explanation benchmark: {report['model']} ({report['map']}), crop {report['crop']}, {threads} threads, "
        f"median of {repeats}",
        f"  one forward pass (ONNX Runtime):  {forward_own * 1e3:8.1f} ms model session, "
        f"{forward_quiet * 1e3:.1f} ms without spinning threads; ratios against {forward * 1e3:.1f} ms",
        f"  {method} as explain runs it:{' ' * max(1, 13 - len(method))}{cam * 1e3:8.1f} ms   "
        f"{cam / forward:5.2f}x forward  (goal < 3x)",
        f"  {method} on the whole torch twin:{' ' * max(1, 8 - len(method))}{whole * 1e3:8.1f} ms   "
        f"{whole / forward:5.2f}x forward",
        f"  occlusion (ONNX Runtime, captum):  {occ * 1e3:8.1f} ms   {occ / forward:5.1f}x forward",
        f"  end to end, crop + preprocessing: classify {classify_s * 1e3:.1f} ms, classify + {method} "
        f"{explain_s * 1e3:.1f} ms ({explain_s / classify_s:.2f}x)",
    ])
    return report
