"""OpenNMT-tf model definition for the third-party end-to-end check (docs/own-model.md).

The size of the project's reference model (3+3 layers, d_model 256, 4 heads, FFN 1024, shared embeddings),
built from OpenNMT-tf's own Transformer class: the toolkit's code, not ours, defines and trains it.
"""

import opennmt


def model():
    return opennmt.models.Transformer(
        num_layers=3,
        num_units=256,
        num_heads=4,
        ffn_inner_dim=1024,
        dropout=0.2,
        attention_dropout=0.1,
        ffn_dropout=0.1,
        share_embeddings=opennmt.models.EmbeddingsSharingLevel.ALL,
    )
