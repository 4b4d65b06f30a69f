#!/usr/bin/env bash
# Issues the extender's mutual-TLS material into DIR (once; an existing complete DIR is kept):
#   ca.crt, tls.crt, tls.key              serving CA and the extender's certificate (127.0.0.1, localhost)
#   client-ca.crt, client.crt, client.key  the CA the extender trusts for callers, and the
#                                          scheduler's client certificate signed by it
# The layout of tls.crt/tls.key/ca.crt is a cert-manager Secret's. Keys are P-256.
#   extender-certs.sh DIR [DNS_NAME...]
# Extra DNS_NAMEs join the serving certificate's names, e.g. `mom-extender.mom-system.svc` for
# the Secrets of manifests/install.yaml.
set -euo pipefail
dir=${1:?usage: extender-certs.sh DIR [DNS_NAME...]}
shift
sans="IP:127.0.0.1,DNS:localhost"
for name in "$@"; do sans+=",DNS:$name"; done
files=(ca.crt tls.crt tls.key client-ca.crt client.crt client.key)
complete=1
for f in "${files[@]}"; do [[ -s $dir/$f ]] || complete=0; done
[[ $complete == 1 ]] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.issue.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
cd "$tmp"
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 365 -subj "/CN=mom-extender-serving-ca" 2>/dev/null
openssl req "${ec[@]}" -keyout tls.key -out tls.csr -subj "/CN=mom-extender" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" > server.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 365 -extfile server.ext 2>/dev/null
openssl req -x509 "${ec[@]}" -keyout client-ca.key -out client-ca.crt -days 365 -subj "/CN=mom-extender-client-ca" 2>/dev/null
openssl req "${ec[@]}" -keyout client.key -out client.csr -subj "/CN=mom-scheduler" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl x509 -req -in client.csr -CA client-ca.crt -CAkey client-ca.key -CAcreateserial -out client.crt -days 365 -extfile client.ext 2>/dev/null
chmod 600 ./*.key
for f in "${files[@]}"; do mv "$f" "$dir/$f"; done
