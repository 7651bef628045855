"""The embedded model: weights on disk, the llama.cpp runtime, and the bridge
from its native callback thread to asyncio.

Importing this package does nothing: the runtime is imported, and the weights
are located, joined and verified, only when the first request needs them.

- :mod:`ails.local.weights` finds the pinned weight parts, joins them once into
  the cache, and verifies the result.
- :mod:`ails.local.model_file` picks the file: a user's GGUF (vetted), else those.
- :mod:`ails.local.gguf` reads just enough of a GGUF header to say whether a file
  is one and whether it carries a chat template.
- :mod:`ails.local.runtime` loads ``xllamacpp`` once per process and settings.
- :mod:`ails.local.generation` runs one generation in its own thread, with a
  slot of :mod:`ails.local.slots` (the slots and the line waiting for one);
  :mod:`ails.local.bridge` hands its chunks to the event loop as a
  :class:`ails.providers.base.ChunkStream`.
"""
