"""Recover a training run folder (spec, float weights, state) from a shipped float32 .tflite and its card, so that
a model can be re-exported (int8, Edge TPU tiles) when the original run folder is gone (runs/ is not in git).

    python scripts/recover_run.py edgesr/models/srgan_w16b1_x2_float32.tflite edgesr/models/srgan_w16b1_x2_int8.json \
        runs/srgan_w16b1_x2

Conv kernels are read by layer name from the flatbuffer (OHWI -> Keras HWIO); the re-exported float32 model
reproduces the shipped one's PSNR exactly (checked: Set5 36.4775 / Set14 32.3744 at x2). EFDN: the shipped model
is folded (plain 3x3 convs); each EDBB block gets the folded kernel in its 3x3 branch (less the identity) and
zeros in the other branches, the same function, so training can go on with every branch."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from converters.archs import ArchSpec, build  # noqa: E402


def _set_edbb(layer, kernel, bias) -> None:
    import numpy as np

    cin, c = kernel.shape[2], kernel.shape[3]
    if cin == c:  # the block adds its input (identity branch)
        kernel = kernel - np.pad(np.eye(c, dtype=np.float32)[None, None], [[1, 1], [1, 1], [0, 0], [0, 0]])
    for v in layer.weights:
        name = v.name.split("/")[-1]
        value = {"k3": kernel, "b3": bias}.get(name)
        if value is None:
            value = np.ones(v.shape, np.float32) if name.endswith("_scale") else \
                np.asarray(v.numpy()) if name == "seq_k3" else np.zeros(v.shape, np.float32)
        v.assign(value)


def main(src: str, card_path: str, out: str) -> None:
    card = json.loads(Path(card_path).read_text())
    spec = ArchSpec.from_dict(card["arch"])
    it = Interpreter(model_path=src)
    it.allocate_tensors()
    det = {t["name"]: t for t in it.get_tensor_details()}
    model = build(spec)
    for layer in model.layers:
        if not layer.weights:
            continue
        k = [n for n in det if n.endswith(f"/{layer.name}_1/convolution") and len(det[n]["shape"]) == 4]
        b = [n for n in det if f"/{layer.name}_1/BiasAdd" in n and len(det[n]["shape"]) == 1]
        if len(k) != 1 or len(b) != 1:
            sys.exit(f"error: {src}: cannot find the weights of layer {layer.name}")
        kernel, bias = it.get_tensor(det[k[0]]["index"]).transpose(1, 2, 3, 0), it.get_tensor(det[b[0]]["index"])
        if layer.name.startswith("edbb"):
            _set_edbb(layer, kernel, bias)
        else:
            layer.set_weights([kernel, bias])
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    model.save_weights(run / "best.weights.h5")
    model.save_weights(run / "last.weights.h5")
    (run / "spec.json").write_text(json.dumps(spec.to_dict()))
    t = card["training"]
    state = {"step": t["steps"], "best_psnr": t.get("best_val_psnr", t.get("best_val_psnr_set5")), "history": [],
             "config": {"data": t["data"], "command": t["command"], "val": t.get("val", "../shared/data/val/Set5"),
                        "recovered_from": src}}
    (run / "state.json").write_text(json.dumps(state, indent=1))
    print(f"recovered {out} from {src}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
