#!/bin/sh
# Copies the Kubernetes binaries into place and starts kubelet.
set -eu
install -m 0755 bin/kubeadm bin/kubectl bin/kubelet /usr/bin/
systemctl enable --now kubelet
