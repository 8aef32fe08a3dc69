"""Model serving: deployments from the registry, the inference server (Open Inference
Protocol v2 and MLflow's ``/invocations``), adaptive batching, and the prediction log.

(Being built: see the modules of this package.)
"""
