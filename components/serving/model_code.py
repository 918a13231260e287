"""The registered model's code (MLflow models-from-code): MLflow runs this file to build the model
when a version is logged and again when one is loaded, so loading executes our module's code instead
of unpickling an object. The weights stay an artifact of the model (`student`)."""

from mlflow.models import set_model

from components.serving.pyfunc import PosePredictorModel

set_model(PosePredictorModel())
