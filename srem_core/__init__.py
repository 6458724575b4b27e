"""SREM: find mismatched image-caption pairs and train retrieval that stays good despite them.

Implements the training objective of Dang et al., "Noisy Correspondence Learning with Self-Reinforcing
Errors Mitigation", AAAI 2024 (arXiv:2312.16478), as far as its public text allows. Where the paper's
method section could not be read, the choices are this project's, and each one is a config switch.
``docs/method.md`` lists which is which.

Glossary (used in names, docstrings and column descriptions):

- ``B``: batch size. ``D``: embedding dimension.
- ``image_features`` / ``text_features``: L2-normalised embeddings in the joint space, shape (B, D).
- ``similarity``: ``image_features @ text_features.T``, shape (B, B), cosine similarity in [-1, 1].
- ``logits_per_image``: ``similarity / tau`` (row i scores every text for image i);
  ``logits_per_text``: its transpose.
- ``energy``: free energy ``-tau * logsumexp(logits)``, averaged over both directions. Unbounded;
  lower means more total logit mass for the anchor.
- ``swapped_entropy``: cross-entropy of one direction's prediction scored against the other
  direction's, averaged over both directions. In [0, inf); low means both directions are confident
  and agree.
- ``per_pair_loss``: the pair's in-batch cross-entropy, averaged over both directions. In [0, inf);
  high means the model does not match this caption with this image.
- ``clean_prob``: posterior probability that a pair is correctly matched, in [0, 1]; higher is cleaner.
- ``is_noisy``: the flag the model predicts (``clean_prob`` below the threshold).
- ``is_injected_noise``: ground truth for synthetic noise: the caption's image was changed on purpose.
- ``caption_to_image``: integer array mapping each caption (pair) to the index of its image.

Three senses of noise are kept apart: injected (known, synthetic), natural (in the data, unknown) and
flagged (predicted by the model).
"""

__version__ = "0.1.0"
