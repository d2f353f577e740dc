"""`VirtModel`: trains any classifier on a list of objective terms; for a Siamese student
with a frozen teacher that is `L = CE + alpha * L_virt` (paper Eq. 10)."""
import keras
import tensorflow as tf

from virt_tf.losses import TaskLoss, labelled_mask, needs_teacher


class VirtModel(keras.Model):
    """Training wrapper: a ``student`` classifier, an optional frozen ``teacher``, and
    ``terms`` (objects of `virt_tf.losses`: `TaskLoss`, `VirtLoss`,
    `LogitDistillationLoss`), each with its weight.

    ``train_step`` runs the teacher (a trained cross-encoder) in inference mode
    without gradient when a term needs it, with its raw attention scores when a
    term needs those, runs the student (with its per-layer Q/K when a term needs
    them), and minimises `sum_t weight_t * term_t`. Every term is a per-example
    vector averaged over the *global* batch, so under a `tf.distribute` strategy
    the replicas' summed gradients are those of one device at the same batch.
    `test_step` and `predict` run the student alone: nothing of VIRT runs at
    inference.

    Under ``mixed_float16`` the optimizer is a loss-scaling one
    (`virt_tf.training.precision.wrap_optimizer`): the summed loss (float32) is scaled before the
    gradients are taken, and a step whose gradients overflow is skipped, not applied;
    the logged losses are the unscaled ones.

    Whether a teacher is needed follows from the terms and is checked here, once.

    Batches may carry the teacher's logits (``features["teacher_logits"]``, computed
    once a stage: `virt_tf.data.teacher_logits`); when no term needs the teacher's
    attention scores, the step then reads them and does not run the teacher.
    Pairs labelled ``-1`` have no gold label: the task loss and the training accuracy
    skip them. A term whose ``schedule`` is ``linear`` has its weight decay linearly
    from ``weight`` at step 0 to 0 at ``total_steps`` (needs ``total_steps``).
    """

    def __init__(self, student, teacher=None, terms=None, total_steps=None, **kwargs):
        super().__init__(**kwargs)
        terms = list(terms) if terms is not None else [TaskLoss()]
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"each objective term may appear once, got {names}")
        if needs_teacher(terms) and teacher is None:
            raise ValueError(f"the objective {terms} needs a teacher (a trained cross-encoder)")
        if any(t.needs_student_qk for t in terms) and student.separate_layers == 0:
            raise ValueError(f"{type(student).__name__} encodes no layer of x and y apart, so "
                             "L_virt does not apply to it (use --virt_alpha=0)")
        if any(t.schedule != "constant" for t in terms) and not total_steps:
            raise ValueError("a term with a weight schedule needs total_steps")
        self.total_steps = total_steps
        self.student = student
        self.terms = terms
        self.teacher = teacher if needs_teacher(terms) else None
        if self.teacher is not None:
            self.teacher.trainable = False
            if any(t.needs_teacher_scores for t in terms):
                t_cfg, s_cfg = teacher.encoder_config, student.encoder_config
                if (t_cfg.num_hidden_layers, t_cfg.num_attention_heads) != (
                        s_cfg.num_hidden_layers, s_cfg.num_attention_heads):
                    raise ValueError("teacher and student need the same layers and heads for "
                                     f"L_virt: teacher {t_cfg.num_hidden_layers}x"
                                     f"{t_cfg.num_attention_heads}, student "
                                     f"{s_cfg.num_hidden_layers}x{s_cfg.num_attention_heads}")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = [keras.metrics.Mean(name=t.name) for t in terms]
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # built networks make a built wrapper: Keras then skips its symbolic build
        # from a first batch (under a strategy that build averages the replicas' inputs)
        self.built = bool(student.built and (self.teacher is None or self.teacher.built))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.x, TensorFlow backend) builds a model under a strategy from a first
        # batch reduced across replicas: int ids averaged to floats, and under
        # MultiWorkerMirroredStrategy a nested batch it cannot reduce at all. Built
        # networks need only the optimizer's slots.
        if not self.built:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return None

    @property
    def metrics(self):
        return [self.loss_tracker, *self.term_trackers, self.accuracy]

    def call(self, features, training=False):
        return self.student(features, training=training)

    def compute_losses(self, features, labels, training=True):
        """Forward pass and the loss terms (used by `train_step` and by tests).

        Returns ``loss`` (the weighted sum, averaged over the global batch), each
        term's batch mean under its name, and the student's ``logits``.
        """
        batch = {"features": features, "labels": labels}
        need_scores = any(t.needs_teacher_scores for t in self.terms)
        if self.teacher is not None and "teacher_logits" in features and not need_scores:
            batch["teacher"] = {"logits": tf.stop_gradient(features["teacher_logits"])}
        elif self.teacher is not None:
            teacher_out = self.teacher.forward(features, training=False,
                                               return_scores=need_scores)
            batch["teacher"] = tf.nest.map_structure(tf.stop_gradient, teacher_out)
        batch["student"] = self.student.forward(
            features, training=training, return_qk=any(t.needs_student_qk for t in self.terms))
        out = {"logits": batch["student"]["logits"]}
        total = 0.0
        for term in self.terms:
            per_example = term.per_example(batch)
            out[term.name] = tf.reduce_mean(per_example)
            total += self._weight(term) * per_example
        out["loss"] = tf.nn.compute_average_loss(total)
        return out

    def _weight(self, term):
        """The term's weight at this optimizer step (its schedule applied)."""
        if term.schedule == "constant" or self.optimizer is None:
            return term.weight
        progress = tf.cast(self.optimizer.iterations, tf.float32) / float(self.total_steps)
        return term.weight * tf.maximum(1.0 - progress, 0.0)

    def train_step(self, data):
        features, labels = data[0], data[1]
        with tf.GradientTape() as tape:
            losses = self.compute_losses(features, labels, training=True)
            # float16: times the dynamic loss scale (the optimizer divides the gradients
            # by it, or skips the step when they overflow); other precisions: unchanged
            scaled = self.optimizer.scale_loss(losses["loss"])
        variables = self.student.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return self._update(losses, labels)

    def _update(self, losses, labels):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(losses["loss"] * replicas)
        for term, tracker in zip(self.terms, self.term_trackers):
            tracker.update_state(losses[term.name])
        self.accuracy.update_state(tf.maximum(labels, 0), losses["logits"],
                                   sample_weight=labelled_mask(labels))
        return _logs({m.name: m.result() for m in self.metrics})

    def test_step(self, data):
        """The student alone: cross-entropy and accuracy (no teacher at inference)."""
        features, labels = data[0], data[1]
        logits = self.student(features, training=False)
        task = tf.reduce_mean(TaskLoss().per_example(
            {"student": {"logits": logits}, "labels": labels}))
        self.loss_tracker.update_state(task)
        self.accuracy.update_state(labels, logits)
        return _logs({"loss": self.loss_tracker.result(), "accuracy": self.accuracy.result()})


def _logs(values):
    """A step's logs as Keras reduces them: under a multi-worker strategy Keras (3.x)
    averages each log across workers along axis 0, so a scalar goes out as `[1]`."""
    strategy = tf.distribute.get_strategy()
    if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)):
        return {k: tf.reshape(v, [1]) for k, v in values.items()}
    return values
