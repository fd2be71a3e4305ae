"""Training: dataclass arguments loadable from YAML, the Trainer subclass that runs SimCSE, GradCache, callbacks."""
