"""Stand-ins for a Kubernetes cluster: the real control-plane binaries run locally."""
