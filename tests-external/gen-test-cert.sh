#!/usr/bin/env bash
# A throwaway CA and a server certificate it signed, for the wss/https
# tests: DIR/ca.pem (trust this), DIR/cert.pem and DIR/key.pem (give these
# to the server: `--tls-cert DIR/cert.pem --tls-key DIR/key.pem`). The
# certificate is valid for localhost and 127.0.0.1, for two days.
#
#   bash tests-external/gen-test-cert.sh DIR
set -euo pipefail

dir=${1:?usage: gen-test-cert.sh DIR}
mkdir -p "$dir"
cd "$dir"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=Blaze test CA $$" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=localhost" -keyout key.pem -out cert.csr 2>/dev/null
cat >cert.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EXT
openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile cert.ext -out cert.pem 2>/dev/null
rm -f cert.csr cert.ext ca.srl ca.key
