"""What a model is and how it answers: items, features, the decision rule, the bundle, the predictor.

Pure numpy and LiteRT: nothing here imports TensorFlow, AWS or any other folder of the package, so the
predict function, the retrain function and the CLI all share one featurizer and one decision rule.
"""
