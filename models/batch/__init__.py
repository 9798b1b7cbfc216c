"""Batch models: fitted offline on replay logs (scikit-learn), scored live by the engine."""
