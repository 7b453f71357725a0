#!/usr/bin/env bash
# Generates the sandbox's PKI with the openssl CLI into DIR (default: $GPUCLOUD_SANDBOX_DIR/pki):
#   ca.{crt,key}                 the sandbox CA (clients trust it; the apiserver's --client-ca-file)
#   apiserver.{crt,key}          serving cert, SAN 127.0.0.1 / localhost / kubernetes.default...
#   admin.{crt,key}              client cert, O=system:masters (kubeconfigs, kwok)
#   controller-manager.{crt,key} CN=system:kube-controller-manager
#   scheduler.{crt,key}          CN=system:kube-scheduler
#   operator.{crt,key}           CN=gpucloud-operator: the operator's restricted identity (no group)
#   logs.{crt,key}               CN=gpucloud-logs: the console's logs reader (no group)
#   apiserver-kubelet-client.{crt,key}  the apiserver's client cert towards real kubelets (logs, exec)
#   kube-proxy.{crt,key}         CN=system:kube-proxy (the default binding system:node-proxier)
#   node-NAME.{crt,key}          O=system:nodes, CN=system:node:NAME: one per real node named after DIR
#   sa.{key,pub}                 RSA key pair that signs service-account tokens
# Existing files are kept (idempotent); delete DIR to regenerate.
# Usage: certs.sh DIR [NODE...]
set -euo pipefail
dir=${1:?usage: certs.sh DIR [NODE...]}
shift
mkdir -p "$dir"
cd "$dir"
umask 077
command -v openssl >/dev/null || { echo "certs.sh: openssl is required" >&2; exit 1; }
days=3650

eckey() { [[ -f $1 ]] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [[ ! -f ca.crt ]]; then
  eckey ca.key
  openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=gpucloud-sandbox-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -addext "subjectKeyIdentifier=hash" -out ca.crt 2>/dev/null
fi

# sign NAME SUBJECT EXTENSIONS...
sign() {
  local name=$1 subj=$2; shift 2
  [[ -f $name.crt ]] && return
  eckey "$name.key"
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid,issuer"
    printf '%s\n' "$@"
  } >"$ext"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days "$days" \
    -extfile "$ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$ext"
}

sign apiserver "/CN=kube-apiserver" "extendedKeyUsage=serverAuth" \
  "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=gpucloud-sandbox-admin" "extendedKeyUsage=clientAuth"
sign controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
sign scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
sign operator "/CN=gpucloud-operator" "extendedKeyUsage=clientAuth"
sign logs "/CN=gpucloud-logs" "extendedKeyUsage=clientAuth"
sign apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
for node in "$@"; do
  sign "node-$node" "/O=system:nodes/CN=system:node:$node" "extendedKeyUsage=clientAuth"
done

if [[ ! -f sa.pub ]]; then
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
fi
chmod 600 ./*.key
