"""nasforge_tdnn: speaker verification with EfficientTDNN supernets.

The plugin's hooks live in :mod:`nasforge_tdnn.plugin`. The space and the supernet in
:mod:`.space` and :mod:`.supernet`; log-mel filterbanks in :mod:`.features`; speech data
(a VoxCeleb-layout tree, or the offline synthetic speakers) in :mod:`.voxceleb`,
:mod:`.speech` and :mod:`.data`; EER and minDCF in :mod:`.scoring`; the baselines in
:mod:`.baselines`.
"""
