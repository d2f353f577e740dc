"""Optimizer of paper section 4.3.2: Adam with linear warmup then linear decay."""
import keras


@keras.saving.register_keras_serializable(package="virt_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then linear decay to 0."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self._decay = keras.optimizers.schedules.PolynomialDecay(
            self.peak, max(1, self.total_steps - self.warmup_steps), end_learning_rate=0.0,
            power=1.0)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.peak * step / max(1, self.warmup_steps)
        decayed = self._decay(keras.ops.maximum(step - self.warmup_steps, 0.0))
        return keras.ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def create_optimizer(learning_rate, total_steps, warmup_ratio=0.1, epsilon=1e-8,
                     beta_1=0.9, beta_2=0.999, clipnorm=None):
    schedule = WarmupLinearDecay(learning_rate, total_steps, int(warmup_ratio * total_steps))
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=beta_1, beta_2=beta_2,
                                 epsilon=epsilon, clipnorm=clipnorm)
