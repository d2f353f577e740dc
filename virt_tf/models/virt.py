"""`VirtModel`: trains a Siamese student with `L = CE + alpha * L_virt` (paper Eq. 10)."""
import keras
import tensorflow as tf

from virt_tf.losses import VirtLoss, logit_distillation_loss


class VirtModel(keras.Model):
    """Training wrapper around a `DualEncoderClassifier` student and a frozen teacher.

    ``train_step`` runs the teacher (a trained `CrossEncoderClassifier`) in
    inference mode without gradient to get its raw attention scores, runs the
    student on x and y separately with its per-layer Q/K, and minimises
    `task_loss + alpha * virt_loss` (+ ``logit_beta`` times a DSE-style logit
    distillation when asked). `test_step` and `predict` run the student alone:
    nothing of VIRT runs at inference.

    With ``alpha == 0`` and ``logit_beta == 0`` no teacher is needed; this is the
    plain Siamese baseline or the "w/o VIRT" ablation.
    """

    def __init__(self, student, teacher=None, alpha=0.0, virt=None, logit_beta=0.0,
                 temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        if alpha < 0 or logit_beta < 0:
            raise ValueError(f"alpha and logit_beta must be >= 0, got {alpha}, {logit_beta}")
        if (alpha > 0 or logit_beta > 0) and teacher is None:
            raise ValueError("alpha > 0 (or logit distillation) needs a teacher")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
            if alpha > 0:
                t_cfg, s_cfg = teacher.encoder_config, student.encoder_config
                if (t_cfg.num_hidden_layers, t_cfg.num_attention_heads) != (
                        s_cfg.num_hidden_layers, s_cfg.num_attention_heads):
                    raise ValueError("teacher and student need the same layers and heads for "
                                     f"L_virt: teacher {t_cfg.num_hidden_layers}x"
                                     f"{t_cfg.num_attention_heads}, student "
                                     f"{s_cfg.num_hidden_layers}x{s_cfg.num_attention_heads}")
        self.alpha = float(alpha)
        self.logit_beta = float(logit_beta)
        self.temperature = float(temperature)
        self.virt = virt or VirtLoss()
        self.task_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.virt_loss_tracker = keras.metrics.Mean(name="virt_loss")
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.task_loss_tracker, self.virt_loss_tracker, self.accuracy]

    def call(self, features, training=False):
        return self.student(features, training=training)

    def compute_losses(self, features, labels, training=True):
        """Forward pass and loss terms (used by `train_step` and by tests)."""
        teacher_out = None
        if self.teacher is not None:
            teacher_out = self.teacher.forward(features, training=False,
                                               return_scores=self.alpha > 0)
            teacher_out = tf.nest.map_structure(tf.stop_gradient, teacher_out)
        out = self.student.forward(features, training=training, return_qk=self.alpha > 0)
        task = self.task_loss_fn(labels, out["logits"])
        virt = tf.constant(0.0)
        total = task
        if self.alpha > 0:
            virt = self.virt(out["text_a"], out["text_b"], teacher_out["scores"],
                             features["text_a"]["input_mask"], features["text_b"]["input_mask"])
            total = total + self.alpha * virt
        if self.logit_beta > 0:
            total = total + self.logit_beta * logit_distillation_loss(
                out["logits"], teacher_out["logits"], self.temperature)
        return {"loss": total, "task_loss": task, "virt_loss": virt, "logits": out["logits"]}

    def train_step(self, data):
        features, labels = data[0], data[1]
        with tf.GradientTape() as tape:
            losses = self.compute_losses(features, labels, training=True)
        variables = self.student.trainable_variables
        grads = tape.gradient(losses["loss"], variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update(losses, labels)

    def test_step(self, data):
        features, labels = data[0], data[1]
        logits = self.student(features, training=False)
        task = self.task_loss_fn(labels, logits)
        return self._update({"loss": task, "task_loss": task, "virt_loss": tf.constant(0.0),
                             "logits": logits}, labels)

    def _update(self, losses, labels):
        self.loss_tracker.update_state(losses["loss"])
        self.task_loss_tracker.update_state(losses["task_loss"])
        self.virt_loss_tracker.update_state(losses["virt_loss"])
        self.accuracy.update_state(labels, losses["logits"])
        return {m.name: m.result() for m in self.metrics}
