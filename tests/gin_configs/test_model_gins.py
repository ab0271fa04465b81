"""models/t5_1_1/*.gin: every size binds the published T5 v1.1 hyper-parameters (T5X's sizes).

The sizes share one base file and override only what differs; this checks the bound result, so a
mistake in the inheritance (a size that forgets an override) fails here.
"""

from __future__ import annotations

import gin
import pytest

from vertjax import gin_utils
from vertjax.models import encoder_decoder, t5

# (emb_dim, num_heads, head_dim, mlp_dim, encoder layers, decoder layers) of T5 v1.1 (+ our tiny).
SIZES = {
    "tiny": (128, 4, 32, 384, 3, 3),
    "small": (512, 6, 64, 1024, 8, 8),
    "base": (768, 12, 64, 2048, 12, 12),
    "large": (1024, 16, 64, 2816, 24, 24),
    "xl": (2048, 32, 64, 5120, 24, 24),
    "xxl": (4096, 64, 64, 10240, 24, 24),
}


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


def _model(size: str, *bindings: str) -> encoder_decoder.EncoderDecoderModel:
    gin_utils.parse_gin(gin_files=[f"models/t5_1_1/{size}.gin"], gin_bindings=bindings)
    return gin.query_parameter("MODEL/macro.value").scoped_configurable_fn()


@pytest.mark.parametrize("size", sorted(SIZES))
def test_each_size_binds_the_t5_v1_1_hyper_parameters(size):
    emb, heads, head_dim, mlp, enc, dec = SIZES[size]
    model = _model(size, "DROPOUT_RATE=0.1")
    tiny = size == "tiny"
    assert model.config == t5.T5Config(
        vocab_size=2100 if tiny else 32128,
        emb_dim=emb,
        num_heads=heads,
        head_dim=head_dim,
        mlp_dim=mlp,
        num_encoder_layers=enc,
        num_decoder_layers=dec,
        mlp_activations=("gelu", "linear"),
        dropout_rate=0.1,
        dtype="float32" if tiny else "bfloat16",
        logits_via_embedding=False,
        remat_policy="full" if size == "xxl" else "none",  # XXL: see benchmarks/README.md
    )
    assert (model.z_loss, model.label_smoothing, model.loss_normalizing_factor) == (1e-4, 0.0, None)
