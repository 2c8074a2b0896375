"""The optional adversarial term of contrast-synthesis training (``--adversarial W``).

A conditional PatchGAN (:mod:`bids_dl.models.discriminator`) learns to tell the true target
images of a patch from the synthesis net's, given the source T1w; the net is trained with
its own loss plus ``W`` x the least-squares adversarial loss (Mao et al. 2017): every patch
score of its images pulled towards "real" (1). The discriminator is trained on its own,
real patches towards 1 and the net's towards 0. Written with compiled Keras models only (no
backend-specific gradient code); tested on TensorFlow and PyTorch (JAX, which the CPU
machines lack, is untested: its trainer may need the models recompiled when ``trainable``
changes):

- ``combined``: T1w -> (synthesis net output, discriminator score of its images), the
  discriminator frozen inside it; its ``train_on_batch`` updates the net alone.
- the discriminator, compiled on its own with a mean-squared-error loss.

Checkpoints: ``combined`` (net, discriminator and the net's optimizer state) in the run's
``checkpoint.keras``, the discriminator with its optimizer state in ``discriminator.keras``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

DISCRIMINATOR_FILE = "discriminator.keras"
#: Adam's first-moment decay for the discriminator (pix2pix's 0.5: a GAN's moving target)
DISCRIMINATOR_BETA_1 = 0.5


def _images_of(output):
    """The first three channels (FLAIR, T2w, CT) of the channels-first training net's
    output, by a fixed 1x1x1 convolution (a plain layer: safe-mode loadable)."""
    from ..models.synthesis_net import N_TARGETS, fixed_projection

    select = np.eye(output.shape[1], N_TARGETS, dtype=np.float32)
    return fixed_projection(output, select, "channels_first", "rendered_images")


def _compile_discriminator(discriminator, learning_rate: float):
    """Compile ``discriminator`` on its own (Adam, mean squared error) with its optimizer
    built, and leave it frozen (as it is inside the joined model); returns the optimizer."""
    import keras

    discriminator.trainable = True
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=DISCRIMINATOR_BETA_1)
    discriminator.compile(optimizer=optimizer, loss="mean_squared_error")
    optimizer.build(discriminator.trainable_variables)
    discriminator.trainable = False
    return optimizer


class AdversarialTraining:
    """The synthesis net ``generator`` (the channels-first training model) trained with
    ``weight`` x the adversarial loss of ``discriminator``; both compiled here, unless
    ``combined`` (the joined model, compiled, e.g. from a checkpoint) is given."""

    def __init__(self, generator, discriminator, weight: float, learning_rate: float,
                 discriminator_learning_rate: float, generator_loss=None, combined=None):
        import keras

        self.generator, self.discriminator, self.weight = generator, discriminator, weight
        self.learning_rate = learning_rate
        self.discriminator_learning_rate = discriminator_learning_rate
        _compile_discriminator(discriminator, discriminator_learning_rate)
        if combined is None:
            source = keras.Input(generator.input.shape[1:], name="source")
            output = generator(source)
            pair = keras.layers.Concatenate(axis=1, name="source_and_images")(
                [source, _images_of(output)])
            combined = keras.Model(source, [output, discriminator(pair)], name="adversarial")
            combined.compile(optimizer=keras.optimizers.Adam(learning_rate),
                             loss=[generator_loss, "mean_squared_error"],
                             loss_weights=[1.0, weight])
        self.combined = combined

    @classmethod
    def resume(cls, checkpoint: Path, weight: float, learning_rate: float,
               discriminator_learning_rate: float) -> AdversarialTraining:
        """The training of a checkpoint written by :meth:`save` (weights and both
        optimizers' states as saved)."""
        import keras

        from . import losses  # noqa: F401  (registers the synthesis loss)

        with warnings.catch_warnings():  # the nested discriminator's own optimizer state
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            combined = keras.models.load_model(checkpoint, compile=True)  # (set below)
        saved_path = Path(checkpoint).parent / DISCRIMINATOR_FILE
        saved = keras.models.load_model(saved_path, compile=True)
        generator = next(layer for layer in combined.layers
                         if isinstance(layer, keras.Model) and layer.name != "discriminator")
        discriminator = combined.get_layer("discriminator")
        discriminator.set_weights(saved.get_weights())
        self = cls(generator, discriminator, weight, learning_rate,
                   discriminator_learning_rate, combined=combined)
        optimizer = discriminator.optimizer
        if len(optimizer.variables) != len(saved.optimizer.variables):
            raise ValueError(f"{saved_path}: its optimizer state does not match the "
                             "discriminator")
        for variable, value in zip(optimizer.variables, saved.optimizer.variables):
            variable.assign(value)
        return self

    def step(self, images: np.ndarray, masks: np.ndarray,
             rate: float) -> tuple[float, tuple[float, float]]:
        """One discriminator step, then one net step, on a batch (channels-first source
        ``images`` ``(b, 1, x, y, z)``, ``masks`` the net's targets); ``rate``: the net's
        learning rate now (the discriminator's follows it in proportion). Returns the net's
        own loss (without the adversarial term, comparable with a run without it) and the
        discriminator's loss and the net's adversarial loss (before the weight)."""
        from ..models.synthesis_net import N_TARGETS

        fake = np.asarray(self.generator.predict_on_batch(images))[:, :N_TARGETS]
        real = masks[:, :N_TARGETS]
        pairs = np.concatenate([np.concatenate([images, real], axis=1),
                                np.concatenate([images, fake], axis=1)])
        score_shape = tuple(self.discriminator.compute_output_shape(pairs.shape))
        labels = np.concatenate([np.ones((len(images), *score_shape[1:]), np.float32),
                                 np.zeros((len(images), *score_shape[1:]), np.float32)])
        self.discriminator.trainable = True
        self.discriminator.optimizer.learning_rate.assign(
            self.discriminator_learning_rate * rate / self.learning_rate)
        discriminator_loss = float(np.asarray(self.discriminator.train_on_batch(pairs, labels)))
        self.discriminator.trainable = False
        self.combined.optimizer.learning_rate.assign(rate)
        logs = self.combined.train_on_batch(images, [masks, labels[:len(images)]],
                                            return_dict=True)
        adversarial = next(float(np.asarray(value)) for key, value in logs.items()
                           if key.startswith("discriminator"))
        return float(np.asarray(logs["loss"])) - self.weight * adversarial, (
            discriminator_loss, adversarial)

    def save(self, checkpoint: Path) -> None:
        """``checkpoint`` (the combined model) and :data:`DISCRIMINATOR_FILE` beside it,
        each written to a temporary file first."""
        from ..utils.io import atomic_path

        self.discriminator.trainable = True
        with atomic_path(Path(checkpoint).parent / DISCRIMINATOR_FILE) as tmp:
            self.discriminator.save(tmp)
        self.discriminator.trainable = False
        with atomic_path(checkpoint) as tmp:
            self.combined.save(tmp)
