#!/bin/sh
# Installs the Calico operator and its custom resources from the rootfs.
set -eu
kubectl apply -f applications/tigera-operator.yaml
kubectl apply -f applications/custom-resources.yaml
