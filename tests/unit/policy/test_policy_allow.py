"""False-positive corpus: ordinary admin commands the starter policy must allow.

If one of these ever needs approval, operators will learn to click "approve" without
reading: that is how a policy stops protecting anything.
"""

from __future__ import annotations

import pytest

from gateway.policy import Action, PolicyEngine, starter_rules

ENGINE = PolicyEngine(starter_rules())

ORDINARY = r"""
ls
ls -la
ls -lah /var/log
ls -ltr /etc/nginx/sites-enabled/
ll
pwd
cd /var/www
cd -
cd ~/projects
whoami
id
id -Gn deploy
hostname -f
uname -a
uptime
date -u
cal
w
who
last -n 20
lastlog -u root
df -h
df -i /
du -sh /var/log/*
du -h --max-depth=1 /srv | sort -h
free -m
vmstat 1 5
iostat -x 1 3
mpstat -P ALL 1 2
sar -u 1 3
top -b -n 1 | head -20
htop
ps aux
ps -ef | grep nginx
ps aux --sort=-%mem | head
pgrep -a sshd
pstree -p
lsof -i :443
lsof -p 1234
ss -tlnp
ss -s
netstat -tulpn
ip a
ip addr show eth0
ip route
ip -br link
ip neigh
ping -c 3 10.0.0.1
traceroute example.com
mtr -r -c 5 example.com
dig example.com +short
dig @8.8.8.8 example.com MX
nslookup example.com
host example.com
curl -s https://example.com/health
curl -sSfL -o /tmp/file.tar.gz https://example.com/file.tar.gz
curl -I https://example.com
curl -s localhost:9100/metrics | grep node_load
wget -q https://example.com/archive.zip
wget -O- https://example.com/status.json | jq .
nc -zv db.internal 5432
telnet mail.internal 25
openssl s_client -connect example.com:443 -servername example.com </dev/null
openssl x509 -in /etc/ssl/certs/site.pem -noout -dates
openssl rand -hex 16
ssh-keygen -lf ~/.ssh/id_ed25519.pub
ssh-keyscan github.com
cat /etc/os-release
cat /etc/hosts
cat /proc/cpuinfo | grep 'model name' | uniq
cat /proc/meminfo
less /var/log/syslog
more /etc/fstab
head -n 50 /var/log/nginx/access.log
tail -f /var/log/nginx/error.log
tail -n 200 /var/log/auth.log | grep Failed
grep -r "listen" /etc/nginx/
grep -rn TODO src/
grep -v '^#' /etc/ssh/sshd_config | grep -v '^$'
grep -c ERROR app.log
grep -E 'error|warn' -i /var/log/app/app.log
egrep -o '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' access.log | sort | uniq -c | sort -rn | head
zgrep ERROR /var/log/app/app.log.1.gz
awk '{print $1}' access.log | sort | uniq -c | sort -rn | head -20
awk -F: '$3 >= 1000 {print $1}' /etc/passwd
awk 'NR==1, NR==10' file.txt
sed -n '10,20p' /etc/nginx/nginx.conf
sed -i 's/worker_processes 1/worker_processes auto/' /etc/nginx/nginx.conf
sed 's/foo/bar/g' input.txt > output.txt
cut -d: -f1 /etc/passwd
sort -u names.txt
uniq -c
wc -l /var/log/syslog
tr 'a-z' 'A-Z' < in.txt
xargs -n1 echo < list.txt
find /var/log -name '*.gz' -mtime +30
find . -type f -name '*.py' | xargs grep -l import
find /tmp -maxdepth 1 -type d -mtime +7 -print
find /home -user bob -ls
find . -name '*.pyc' -delete
locate nginx.conf
which python3
type ls
whereis sshd
file /usr/bin/python3
stat /etc/passwd
readlink -f /usr/bin/java
realpath ../x
basename /a/b/c.txt
dirname /a/b/c.txt
tree -L 2 /etc/nginx
diff -u a.conf b.conf
cmp a.bin b.bin
md5sum file.iso
sha256sum -c SHA256SUMS
base64 file.bin > file.b64
base64 -d file.b64 > file.bin
xxd file.bin | head
hexdump -C file.bin | head
strings /usr/bin/ls | head
journalctl -u nginx --since today
journalctl -xe
journalctl -f -u sshd
journalctl --disk-usage
journalctl -p err -b
systemctl status nginx
systemctl status
systemctl is-active postgresql
systemctl is-enabled sshd
systemctl list-units --failed
systemctl list-timers
systemctl cat nginx
systemctl show -p MainPID nginx
systemctl daemon-reload
systemctl start nginx
systemctl enable --now chrony
systemctl reload nginx
service nginx status
service --status-all
dmesg | tail
dmesg -T --level=err,warn
lsblk
lsblk -f
blkid
fdisk -l
mount | column -t
findmnt /
cat /proc/mounts
lscpu
lsmem
lspci
lsusb
sensors
timedatectl
timedatectl status
hostnamectl
localectl
loginctl list-sessions
chronyc tracking
ntpq -p
apt update
apt list --upgradable
apt-get install -y htop
apt-cache policy nginx
apt show curl
dpkg -l | grep nginx
dpkg -L openssh-server
yum check-update
yum info httpd
dnf list installed
rpm -qa | grep kernel
rpm -qi bash
snap list
pip list
pip install --user requests
pip3 show boto3
python3 --version
python3 -m venv .venv
python3 -m pip install -r requirements.txt
python3 manage.py migrate
python3 script.py --dry-run
node --version
npm ci
npm run build
go version
java -version
docker ps
docker ps -a
docker images
docker logs --tail 100 web
docker logs -f api
docker inspect web
docker stats --no-stream
docker compose ps
docker compose logs -f
docker compose up -d
docker exec -it web sh
docker pull nginx:1.25
docker build -t app:latest .
docker run --rm -it alpine sh
docker network ls
docker volume ls
docker system df
kubectl get pods
kubectl get pods -A -o wide
kubectl get nodes
kubectl get svc -n kube-system
kubectl describe pod api-7d9f8 -n prod
kubectl logs -f deploy/api -n prod
kubectl logs api-7d9f8 --previous
kubectl top pods
kubectl get events --sort-by=.metadata.creationTimestamp
kubectl rollout status deploy/api
kubectl config get-contexts
kubectl config use-context staging
kubectl apply -f deploy.yaml
kubectl port-forward svc/api 8080:80
helm list -A
helm status api
terraform plan
terraform fmt
ansible all -m ping
ansible-playbook -i inventory site.yml --check
git status
git log --oneline -20
git diff HEAD~1
git pull --rebase
git fetch --all --prune
git checkout -b fix/typo
git add -A
git commit -m "Fix typo in config"
git push origin main
git stash list
git branch -a
git show --stat HEAD
git blame README.md
git clone https://github.com/example/repo.git
tar -czf backup.tar.gz /etc/nginx
tar -xzf release.tar.gz -C /opt/app
tar -tvf archive.tar
zip -r site.zip public/
unzip -l archive.zip
gzip -9 big.log
gunzip file.gz
zcat log.gz | less
xz -d file.xz
rsync -avz --progress src/ backup:/srv/backup/
rsync -a --delete ./public/ /var/www/html/
scp file.txt user@host:/tmp/
sftp user@host
ssh bastion
ssh -J jump app01 uptime
cp nginx.conf nginx.conf.bak
cp -r /etc/nginx /tmp/nginx-backup
mv app.log app.log.1
mkdir -p /opt/app/releases/2024
rmdir empty_dir
rm app.log.1
rm -f /tmp/lockfile
rm -rf /tmp/build-1234
rm -rf ./node_modules
rm -r old_release/
ln -s /opt/app/current /var/www/app
touch /tmp/marker
chmod 644 /etc/nginx/nginx.conf
chmod +x deploy.sh
chmod 600 ~/.ssh/id_rsa
chmod -R g+w /srv/shared
chown www-data:www-data /var/www/html/index.html
chown -R deploy:deploy /opt/app
chgrp adm /var/log/app.log
umask
ulimit -n
getent passwd bob
getent group sudo
groups bob
sudo -l
sudo -v
sudo -i
sudo su -
su - postgres
sudo -u postgres psql -c 'select 1'
psql -h db -U app -c '\dt'
mysql -u root -p -e 'show databases'
redis-cli ping
redis-cli info memory
mongo --eval 'db.stats()'
crontab -l
crontab -e
at -l
env
printenv PATH
export EDITOR=vim
echo $PATH
echo "$HOME"
echo 'hello world'
printf '%s\n' a b c
echo "done!"
set -o vi
alias ll='ls -la'
unalias ll
history
history | tail -20
source ~/.bashrc
. venv/bin/activate
clear
reset
exit
logout
vim /etc/hosts
vi /etc/nginx/nginx.conf
nano ~/.bashrc
man rsync
help cd
watch -n 5 df -h
watch 'ps aux | grep java'
screen -ls
tmux attach -t main
tmux ls
nohup ./worker.sh > worker.log 2>&1 &
jobs
fg
bg
kill 12345
kill -HUP 1234
kill -9 4242
pkill -f 'gunicorn: worker'
killall -USR1 nginx
nice -n 10 tar -czf a.tgz dir
ionice -c3 rsync -a src/ dst/
timeout 10 curl -s localhost:8080/health
time make -j4
make
make install
./configure --prefix=/usr/local
./deploy.sh staging
bash deploy.sh
sh ./install.sh --help
nginx -t
nginx -s reload
apachectl configtest
haproxy -c -f /etc/haproxy/haproxy.cfg
named-checkconf
postfix check
sshd -t
visudo -c
iptables -L -n -v
iptables -S
iptables-save
nft list ruleset
ufw status verbose
fail2ban-client status sshd
getenforce
sestatus
aa-status
auditctl -l
ausearch -m avc -ts recent
last reboot
needrestart -r l
checkrestart
lsmod
modinfo e1000
sysctl -a | grep ip_forward
sysctl net.ipv4.ip_forward
cat /sys/class/net/eth0/speed
ethtool eth0
iw dev
nmcli device status
resolvectl status
tcpdump -i eth0 -c 100 port 53
tcpdump -nn -i any host 10.0.0.5
nmap -p 22,80,443 10.0.0.5
ab -n 100 -c 10 http://localhost/
siege -c 5 -t 10s http://localhost/
jq '.items[] | .metadata.name' pods.json
yq '.spec' deploy.yaml
column -t -s, data.csv
tee -a /tmp/out.log
seq 1 10
sleep 5
yes | head -3
true
false
test -f /etc/passwd && echo exists
[ -d /opt/app ] || mkdir /opt/app
[[ -n "$SSH_AUTH_SOCK" ]] && ssh-add -l
for f in *.log; do gzip "$f"; done
for h in web1 web2; do ssh "$h" uptime; done
while read -r line; do echo "$line"; done < hosts.txt
if systemctl is-active -q nginx; then echo up; fi
case "$1" in start) echo go;; esac
x=$(hostname); echo "$x"
echo "$(date +%F)"
cat <<EOF > /tmp/motd
Welcome
EOF
ls $(dirname /usr/bin/env)
diff <(sort a.txt) <(sort b.txt)
VAR=1 ./run.sh
LANG=C sort file
du -sh * | sort -h
ls -d */
cat ~/.ssh/known_hosts
ssh-add -l
gpg --list-keys
certbot certificates
certbot renew --dry-run
logrotate -d /etc/logrotate.conf
update-alternatives --display java
locale
df -hT
free -h && uptime
ps -o pid,ppid,cmd -p 1
strace -p 1234 -f -e trace=network
ltrace -c ls
perf top
iotop -o
nethogs
iftop -i eth0
smartctl -a /dev/sda
mdadm --detail /dev/md0
lvs
vgs
pvs
zpool status
btrfs filesystem df /
xfs_info /
e2fsck -n /dev/sdb1
mount -o remount,rw /
umount /mnt/usb
swapon --show
fuser -m /mnt/data
sync
python3 -c 'print(1 + 1)'
python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])' < x.json
cat data.json | python3 -m json.tool
perl -ne 'print if /ERROR/' app.log
perl -pi -e 's/foo/bar/g' config.ini
ruby -v
curl -s https://api.example.com/v1/status | jq -r .state
echo c3RhdHVz | base64 -d
openssl enc -d -aes-256-cbc -in secret.enc -out secret.txt -pass file:key
"""

COMMANDS = [c for c in ORDINARY.strip().split("\n") if c and not c.startswith("Welcome")]
# The here-document above spans three lines: keep it one command.
_HEREDOC = "cat <<EOF > /tmp/motd\nWelcome\nEOF"
COMMANDS = [c for c in COMMANDS if c not in ("cat <<EOF > /tmp/motd", "EOF")] + [_HEREDOC]


def test_corpus_is_large_enough() -> None:
    assert len(COMMANDS) >= 300
    assert len(set(COMMANDS)) == len(COMMANDS)


@pytest.mark.parametrize("line", COMMANDS, ids=[c[:50] for c in COMMANDS])
def test_ordinary_command_allowed(line: str) -> None:
    d = ENGINE.decide(line, user="alice", groups=["ops"], target="web1")
    assert d.action is Action.ALLOW, (line, d)
    assert d.commands  # the engine saw what runs
