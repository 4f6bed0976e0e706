#!/usr/bin/env python3
"""The Python side of tests/onnx_export.rs: runs a gradnas ONNX export in
onnxruntime and compares its logits with gradnas's own.

    python3 tests/onnx_parity.py MODEL.onnx IMAGES.npy REFERENCE.npy

IMAGES.npy holds float32 [N, C, H, W] pixels in [0, 1] (raw bytes / 255),
REFERENCE.npy gradnas's float32 [N, classes] logits for them. Prints one JSON
object: the largest absolute logit difference, how many predicted classes
agree, the largest difference between running the batch whole and in uneven
pieces (the batch dimension must be dynamic), the declared input and output
shapes, and the result of onnx.checker when the onnx package is installed.
Exits 3 when numpy or onnxruntime is missing.
"""

import json
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"onnx_parity.py: {e}: run python3 -m pip install onnxruntime numpy", file=sys.stderr)
        sys.exit(3)
    model, images_path, reference_path = sys.argv[1:]
    images = np.load(images_path)
    reference = np.load(reference_path)
    if images.dtype != np.float32 or images.ndim != 4:
        sys.exit(f"{images_path}: expected float32 NCHW, got {images.dtype} {images.shape}")
    if reference.shape[0] != images.shape[0]:
        sys.exit(f"{reference_path}: {reference.shape[0]} rows for {images.shape[0]} images")

    checker = "skipped: the onnx package is not installed"
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        m = onnx.load(model)
        # full_check also runs shape inference over the whole graph.
        onnx.checker.check_model(m, full_check=True)
        checker = f"passed (onnx {onnx.__version__}, ir_version {m.ir_version}, " + \
            ", ".join(f"opset {o.version}" for o in m.opset_import) + ")"

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    logits = sess.run([out.name], {inp.name: images})[0]
    n = images.shape[0]
    # Uneven pieces: 1, 7, and the rest; each must give the whole batch's rows.
    cuts = [0, min(1, n), min(8, n), n]
    pieces = [sess.run([out.name], {inp.name: images[a:b]})[0] for a, b in zip(cuts, cuts[1:]) if b > a]
    chunked = np.concatenate(pieces)

    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    # JSON has no NaN or infinity: a non-finite logit on either side counts
    # as a difference of 1e30 and is reported on its own.
    nonfinite = ~np.isfinite(diff)
    diff[nonfinite] = 1e30
    result = {
        "n": int(n),
        "classes": int(logits.shape[1]),
        "max_abs_diff": float(diff.max()),
        "nonfinite": int(nonfinite.sum()),
        "max_abs_logit": float(np.abs(np.nan_to_num(reference, posinf=1e30, neginf=1e30)).max()),
        "argmax_agree": int((logits.argmax(1) == reference.argmax(1)).sum()),
        "chunked_max_abs_diff": float(np.nan_to_num(np.abs(chunked - logits), nan=1e30, posinf=1e30).max()),
        "input": {"name": inp.name, "shape": [d if isinstance(d, int) else str(d) for d in inp.shape]},
        "output": {"name": out.name, "shape": [d if isinstance(d, int) else str(d) for d in out.shape]},
        "onnxruntime": ort.__version__,
        "checker": checker,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
