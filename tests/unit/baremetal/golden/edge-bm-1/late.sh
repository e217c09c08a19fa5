#!/bin/sh
# Runs in the installed system of node edge-bm-1 (site metal) at the end of
# its unattended install. Written by blueprint from the site file; do not edit.
set -eu

# The SSH host key the installer expects on first contact.
install -d -m 0755 /etc/ssh
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
cat > /etc/ssh/ssh_host_ed25519_key <<'KEY'
-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUx
OQAAACBiovI6+GhIqTHPbmvUrKYvuw77x64kVRO4/VKPgVFc+AAAAIgKLau5Ci2ruQAAAAtzc2gt
ZWQyNTUxOQAAACBiovI6+GhIqTHPbmvUrKYvuw77x64kVRO4/VKPgVFc+AAAAEAIovojeZWGeG17
LLZAjrZdd8mcmtC1Q2Pc1c60RgQ/VWKi8jr4aEipMc9ua9Sspi+7DvvHriRVE7j9Uo+BUVz4AAAA
AAECAwQF
-----END OPENSSH PRIVATE KEY-----
KEY
cat > /etc/ssh/ssh_host_ed25519_key.pub <<'KEY'
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGKi8jr4aEipMc9ua9Sspi+7DvvHriRVE7j9Uo+BUVz4 root@edge-bm-1
KEY
chmod 0600 /etc/ssh/ssh_host_ed25519_key
chmod 0644 /etc/ssh/ssh_host_ed25519_key.pub
echo 'HostKey /etc/ssh/ssh_host_ed25519_key' > /etc/ssh/sshd_config.d/10-blueprint-hostkey.conf

# The installer user's keys; password login stays off.
home=$(getent passwd deploy | cut -d: -f6)
install -d -m 0700 -o deploy -g deploy "$home/.ssh"
cat > "$home/.ssh/authorized_keys" <<'KEYS'
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMeZUZNlJyW0hTWzcFEMlnJdzvk1gYzirZlxzmWcy7JT test
KEYS
chown deploy:deploy "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-blueprint
chmod 0440 /etc/sudoers.d/90-blueprint
echo 'PasswordAuthentication no' > /etc/ssh/sshd_config.d/10-blueprint-nopassword.conf
cat > /usr/local/share/ca-certificates/site-ca.crt <<'PEM'
-----BEGIN CERTIFICATE-----
MIIBPDCB4qADAgECAgEBMAoGCCqGSM49BAMCMB0xGzAZBgNVBAMMEm1ldGFsIHRl
c3Qgc2l0ZSBDQTAeFw0yNjAxMDEwMDAwMDBaFw0zNTEyMzAwMDAwMDBaMB0xGzAZ
BgNVBAMMEm1ldGFsIHRlc3Qgc2l0ZSBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABNKbIDxm0pL0ec/n0JPoji1iYYEvc3tJL7RZs/VDLMA54qZZyp0xeQJ0zDN2
l1zefMOXzOmzfd5SkHBmtPT4CdGjEzARMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSQAwRgIhALonswcpQT81ye3UOuJj5cSKBA6cY4y7If87VjKQLBkXAiEA
2o+8yvyeyzc34yVjIzYfkg/0fTtyurNBHm6UOsIbvHY=
-----END CERTIFICATE-----
PEM
update-ca-certificates
echo 'Acquire::http::Proxy "http://10.90.0.2:3142";' > /etc/apt/apt.conf.d/01blueprint-proxy
cat >> /etc/environment <<'ENV'
http_proxy=http://10.90.0.2:3128
no_proxy=localhost,10.90.0.0/24
ENV
