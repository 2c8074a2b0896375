"""The contrast-synthesis network: a 3D U-Net that predicts, per voxel, the mixture of tissue
classes (every label of the synthetic heads, then lesions; softmax), followed by a fixed
rendering layer that turns the mixture into each target image through the physics of its
reference acquisition (a 1x1x1 convolution whose weights are the tissues' FLAIR and T2w
signals relative to white matter and their CT numbers / 1000,
:func:`bids_dl.synth.physics.reference_signals`; not trained).

With a **lesion branch** (``lesion_branch=True``), lesions come from a second, frozen U-Net
with the lesion model's architecture (initialised from the lesion model's T1w path:
:func:`bids_dl.training.train.initialise_lesion_branch`): its lesion probability ``p``, gated
by the mixture's share of brain parenchyma, replaces the mixture's lesion class,
``tissues = q (1 - p) + p e_lesion`` (``q``: the U-Net's softmax), so a lesion the lesion model
sees on the T1w is rendered with the lesion signals whatever the mixture U-Net makes of it
(its own lesion class collapsed in training: lesions are < 1 % of the voxels and look like
grey matter on a T1w). Every layer is a plain Keras layer (safe-mode loadable).

Shipped (inference) model: input ``(batch, x, y, z, 1)`` normalised T1w, output ``(batch, x,
y, z, 3)`` FLAIR, T2w, CT/1000. Training model: the rendered images, then the tissue
fractions, concatenated on the channel axis (``3 + N_TISSUE_CLASSES`` channels), so the loss
can weigh both.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .contrast_synthesis import HU_SCALE, TARGETS
from .unet import build_unet

N_TARGETS = len(TARGETS)
#: Architecture of the lesion branch: the shipped lesion model's (its 4 sigmoid outputs:
#: lesions, ventricles, cortex, infratentorial brain; the first is used)
LESION_BRANCH = {"filters": (8, 16, 32, 64), "groups": 4, "activation": "leaky_relu",
                 "out_channels": 4}
#: Tissue classes a lesion may replace (the lesion gate): brain parenchyma, then lesions
PARENCHYMA = ("cortical_gm", "cerebral_wm", "deep_gm", "cerebellar_gm", "cerebellar_wm",
              "brainstem")


def rendering_weights() -> np.ndarray:
    """``(N_TISSUE_CLASSES, 3)`` per-class FLAIR, T2w (x white matter) and CT (HU / 1000)."""
    from ..synth.physics import reference_signals

    signals = reference_signals()
    signals[2] /= HU_SCALE
    return signals.T.astype(np.float32)


def fixed_projection(x, kernel: np.ndarray, data_format: str, name: str):
    """A fixed (non-trainable) 1x1x1 convolution, ``kernel`` ``(in, out)``, no bias."""
    conv = layers.Conv3D(kernel.shape[1], 1, use_bias=False, trainable=False, dtype="float32",
                         data_format=data_format, name=name)
    out = conv(x)
    conv.set_weights([kernel.reshape(1, 1, 1, *kernel.shape).astype(np.float32)])
    return out


def _with_branch_lesions(q, image, data_format: str):
    """``q (1 - p) + p e_lesion`` with ``p`` the frozen lesion branch's lesion probability
    times ``q``'s parenchyma share (see the module docstring)."""
    from ..synth.labels import LABELS

    classes = q.shape[-1 if data_format == "channels_last" else 1]
    branch = build_unet(in_channels=1, dropout=0.0, final_activation="sigmoid",
                        data_format=data_format, name="lesion_branch", **LESION_BRANCH)
    branch.trainable = False
    select = np.zeros((LESION_BRANCH["out_channels"], 1))
    select[0, 0] = 1.0
    probability = fixed_projection(branch(image), select, data_format, "lesion_probability")
    gate = np.zeros((classes, 1))
    gate[[LABELS[name] for name in PARENCHYMA] + [classes - 1], 0] = 1.0
    parenchyma = fixed_projection(q, gate, data_format, "parenchyma")
    lesion = layers.Multiply(name="branch_lesion")([probability, parenchyma])
    displaced = layers.Multiply(name="displaced")([q, lesion])
    one_hot = np.zeros((1, classes))
    one_hot[0, -1] = 1.0
    kept = layers.Subtract(name="kept")([q, displaced])
    return layers.Add(name="tissues")(
        [kept, fixed_projection(lesion, one_hot, data_format, "lesion_class")])


#: Width of the residual correction's hidden layer (``residual=True``)
RESIDUAL_WIDTH = 8
#: Layers of the residual correction: new in a model started from one without them, so
#: they keep their initial weights (the correction starts at zero)
RESIDUAL_LAYERS = ("residual_hidden", "residual")


def _residual_correction(features, image, data_format: str):
    """Additive corrections of the three rendered images (3 channels) from the
    U-Net's last features and the source: a 3x3x3 convolution (leaky ReLU) then a 1x1x1 one
    initialised at zero, so a net gains the correction without changing its output."""
    axis = -1 if data_format == "channels_last" else 1
    both = layers.Concatenate(axis=axis, name="residual_inputs")([features, image])
    hidden = layers.Conv3D(RESIDUAL_WIDTH, 3, padding="same", activation="leaky_relu",
                           data_format=data_format, name="residual_hidden")(both)
    return layers.Conv3D(N_TARGETS, 1, kernel_initializer="zeros", bias_initializer="zeros",
                         dtype="float32", data_format=data_format, name="residual")(hidden)


def build_synthesis_net(filters: tuple[int, ...] = (8, 16, 32, 64), groups: int = 4,
                        dropout: float = 0.1, activation: str = "relu",
                        data_format: str = "channels_last", training: bool = False,
                        lesion_branch: bool = False, residual: bool = False,
                        name: str = "tissue_synthesis") -> keras.Model:
    """The synthesis network (see the module docstring); ``training``: also output the
    tissue fractions; ``lesion_branch``: lesions from a frozen lesion U-Net; ``residual``:
    a learned additive correction of the rendered images (:func:`_residual_correction`;
    what fixed per-tissue signals cannot follow: a head's tissue texture and its own
    tissue values). Layer names match :func:`~bids_dl.models.unet.build_unet`'s (the
    logits are its ``output`` layer), so U-Net weights initialise it; the final mixture is
    the ``tissues`` layer."""
    weights = rendering_weights()
    unet = build_unet(filters=filters, in_channels=1, out_channels=weights.shape[0],
                      groups=groups, dropout=dropout, final_activation="linear",
                      data_format=data_format, activation=activation, name=name)
    axis = -1 if data_format == "channels_last" else 1
    tissues = layers.Softmax(axis=axis, dtype="float32",
                             name="mixture" if lesion_branch else "tissues")(unet.output)
    if lesion_branch:
        tissues = _with_branch_lesions(tissues, unet.input, data_format)
    images = fixed_projection(tissues, weights, data_format, "render")
    if residual:
        features = unet.get_layer("output").input
        correction = _residual_correction(features, unet.input, data_format)
        images = layers.Add(name="corrected")([images, correction])
    outputs = layers.Concatenate(axis=axis, name="images_and_tissues")(
        [images, tissues]) if training else images
    return keras.Model(unet.input, outputs, name=name)


def to_inference(model: keras.Model, **build_kwargs) -> keras.Model:
    """The channels-last inference copy of a (channels-first, training) synthesis net."""
    copy = build_synthesis_net(data_format="channels_last", training=False, **build_kwargs)
    source = {layer.name: layer for layer in model.layers}
    for layer in copy.layers:
        if layer.weights:
            layer.set_weights(source[layer.name].get_weights())
    return copy
