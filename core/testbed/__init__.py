"""The mini-canvas testbed: a procedural OBJECTS × STYLES world, a tiny SD pipeline trained on it, and a judge."""

from core.testbed.classifier import Classifier
from core.testbed.loading import is_testbed, load_classifier, load_manifest, load_pipeline
from core.testbed.paths import testbed_dir

__all__ = ["Classifier", "is_testbed", "load_classifier", "load_manifest", "load_pipeline", "testbed_dir"]
