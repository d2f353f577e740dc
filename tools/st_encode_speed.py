"""sentence-transformers' encoding speed on a list of texts (run by benchmark_speed.py).

Runs in a separate interpreter that has sentence-transformers with its torch,
onnx and openvino backends (PyTorch is not a dependency of this project)::

    python -m venv st && st/bin/pip install torch==2.13.0 'sentence-transformers[onnx,openvino]'
    st/bin/python tools/st_encode_speed.py --texts texts.json --model MODEL_DIR

Prints one JSON line: texts per second of each backend (median of ``--repeats``
timed passes after a warm-up pass), the thread count and the versions.
Uses only the standard library besides sentence-transformers.
"""
import argparse
import json
import statistics
import sys
import time


def measure(model, texts, batch_size, repeats):
    """Seconds (median of ``repeats`` passes after a warm-up) and texts per second."""
    model.encode(texts[:2 * batch_size], batch_size=batch_size)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(texts, batch_size=batch_size)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"seconds": round(seconds, 3), "texts_per_second": round(len(texts) / seconds, 1)}


def inference_precision(model):
    """The OpenVINO CPU plugin's inference precision of an openvino-backend model (best
    effort: optimum-intel keeps the compiled model in ``request``); None elsewhere."""
    for module in model:
        auto = getattr(module, "auto_model", None)
        compiled = getattr(auto, "request", None)
        compiled = getattr(compiled, "get_compiled_model", lambda c=compiled: c)()
        try:
            value = compiled.get_property("INFERENCE_PRECISION_HINT")
            return value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        except Exception:  # pylint: disable=broad-except
            continue
    return None


def main(argv=None):
    """Parse the arguments, time every backend, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", required=True, help="JSON list of strings")
    parser.add_argument("--model", required=True, help="sentence-transformers model folder")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--backends", default="torch,onnx,openvino")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    # sentence-transformers and torch: in the other interpreter only (not dependencies here)
    import sentence_transformers  # pylint: disable=import-outside-toplevel
    from sentence_transformers import SentenceTransformer  # pylint: disable=import-outside-toplevel

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    out = {"texts": len(texts), "batch_size": args.batch_size,
           "sentence_transformers": sentence_transformers.__version__, "backends": {}}
    try:
        import torch  # pylint: disable=import-outside-toplevel
        out["torch"], out["torch_threads"] = torch.__version__, torch.get_num_threads()
    except ImportError:
        pass
    for backend in args.backends.split(","):
        try:
            model = SentenceTransformer(args.model, backend=backend, device="cpu")
            out["backends"][backend] = measure(model, texts, args.batch_size, args.repeats)
            if backend == "openvino":
                out["backends"][backend]["inference_precision"] = inference_precision(model)
        except Exception as e:  # pylint: disable=broad-except
            out["backends"][backend] = {"error": f"{type(e).__name__}: {e}"[:500]}
        print(f"{backend}: {out['backends'][backend]}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
