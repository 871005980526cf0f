"""A real Kubernetes node beside the local control plane: kubelet, containerd, runc, a CNI
bridge, kube-proxy and CoreDNS, and the images it runs, all built and kept on this machine."""
