#!/usr/bin/env bash
# make-queue-files.sh - regenerate tests/data/queue/: real Postfix queue files
# written by the real cleanup(8) of the installed Postfix (3.7.11, Debian 12),
# plus a postcat(1) listing and an independent record dump of each file.
#
# Usage (as root):  bash tests/data/make-queue-files.sh [OUTDIR]
#   OUTDIR defaults to tests/data/queue next to this script. KEEP=1 keeps the
#   temporary instance directory (stopped) for inspection.
#
# A private Postfix instance is built in a fresh /tmp directory (its own
# config_directory, queue_directory, daemon_directory and meta_directory; log
# via postlogd into a file); /etc/postfix and /var/spool/postfix are only read
# from (daemon binaries, postfix-files). smtpd listens on 127.0.0.1 only. The
# instance is stopped, and every process of it killed, on exit (trap).
set -euo pipefail
export LC_ALL=C
# Daemons import TZ (import_environment): Received: headers, the maillog and
# postcat's time stamps are then in UTC.
export TZ=UTC
umask 022

die() { echo "make-queue-files: error: $*" >&2; exit 1; }
note() { echo "make-queue-files: $*" >&2; }

[[ $EUID -eq 0 ]] || die "run as root (postfix start needs it)"
for c in postfix postconf postcat postsuper; do
    command -v "$c" >/dev/null || die "$c not found (apt-get install postfix)"
done
PY=$(command -v python3) || die "python3 is needed"

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
OUT=$(realpath -m -- "${1:-$HERE/queue}")

mapfile -t V < <(postconf -dh daemon_directory meta_directory command_directory \
                 shlib_directory mail_owner setgid_group mail_version)
((${#V[@]} == 7)) || die "postconf -d did not answer"
DAEMON_SRC=${V[0]} META_SRC=${V[1]} CMD_DIR=${V[2]} SHLIB_DIR=${V[3]}
MAIL_OWNER=${V[4]} SETGID_GROUP=${V[5]} PF_VERSION=${V[6]}
[[ -x $DAEMON_SRC/oqmgr ]] || die "no $DAEMON_SRC/oqmgr"

W=$(mktemp -d /tmp/make-queue-files.XXXXXX)
chmod 755 "$W"
ETC=$W/etc SPOOL=$W/spool LOG=$W/maillog
MASTER_PID=

# ------------------------------------------------------------ teardown ---

session_pids() {   # PIDs whose session id is $1 (master calls setsid)
    local d line rest
    local -a f
    for d in /proc/[0-9]*; do
        { read -r line < "$d/stat"; } 2>/dev/null || continue
        rest=${line##*) }
        read -r -a f <<< "$rest"
        [[ ${f[3]:-} == "$1" ]] && echo "${d#/proc/}"
    done
    return 0
}

teardown() {
    local rc=$? i pids
    trap - EXIT INT TERM
    if [[ -n $MASTER_PID ]]; then
        postfix -c "$ETC" stop < /dev/null > /dev/null 2>&1 || true
        for ((i = 0; i < 100; i++)); do
            pids=$(session_pids "$MASTER_PID")
            [[ -z $pids && ! -d /proc/$MASTER_PID ]] && break
            sleep 0.1
        done
        pids=$(session_pids "$MASTER_PID")
        if [[ -n $pids ]]; then
            note "killing leftover processes of the instance: $pids"
            # shellcheck disable=SC2086
            kill -9 $pids 2> /dev/null || true
        fi
    fi
    if ((rc != 0)) && [[ -n ${NEW_OUT:-} && -d $NEW_OUT ]]; then rm -rf -- "$NEW_OUT"; fi
    if ((rc != 0)) && [[ -f $LOG ]]; then
        note "failed (status $rc); last lines of the instance log:"
        tail -n 30 "$LOG" >&2 || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then note "kept $W"; else rm -rf -- "$W"; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ instance ---

port_in_use() {
    local hex
    printf -v hex ':%04X' "$1"
    awk -v h="$hex" 'FNR > 1 && substr($2, length($2) - 4) == h { f = 1; exit } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2> /dev/null
}
SMTPD_PORT=
for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    port_in_use "$p" || { SMTPD_PORT=$p; break; }
done
[[ -n $SMTPD_PORT ]] || die "no free TCP port"

mkdir -p "$ETC" "$W/libexec" "$W/meta/postfix-files.d" "$W/meta/dynamicmaps.cf.d" "$SPOOL" "$W/data"
chown root:root "$SPOOL"; chmod 755 "$SPOOL"
chown "$MAIL_OWNER" "$W/data"; chmod 700 "$W/data"
# Private copies: "postfix start" runs post-install, which fixes up owners and
# modes of what postfix-files lists under daemon_directory/meta_directory.
for f in "$DAEMON_SRC"/*; do [[ -f $f ]] && cp -p "$f" "$W/libexec/"; done
cp -p "$META_SRC/postfix-files" "$W/meta/"
cp -p "$META_SRC"/postfix-files.d/* "$W/meta/postfix-files.d/" 2> /dev/null || true
if [[ -f $META_SRC/dynamicmaps.cf ]]; then cp -p "$META_SRC/dynamicmaps.cf" "$W/meta/"
else : > "$W/meta/dynamicmaps.cf"; fi
cp -p "$META_SRC"/dynamicmaps.cf.d/* "$W/meta/dynamicmaps.cf.d/" 2> /dev/null || true

# Per-recipient actions used by the filter and redirect cases (smtpd FILTER /
# REDIRECT actions end up as L and > records in the queue file).
ACCESS='inline:{ { filter@d1.example = FILTER myfilter:[127.0.0.1]:10025 }, { redirect@d1.example = REDIRECT other@d3.example } }'
# Routing for the partly-done case: done.example is discarded (the discard
# agent marks those recipients done: R -> D), later.example is deferred by
# error(8) running as the retry service (the file goes to deferred/).
TRANSPORTS='inline:{ done.example=discard, { later.example = retry:4.4.1 deferred on purpose by make-queue-files } }'

cat > "$ETC/main.cf" <<EOF
# private instance of make-queue-files.sh (Postfix $PF_VERSION)
compatibility_level = 3.6
queue_directory = $SPOOL
daemon_directory = $W/libexec
data_directory = $W/data
meta_directory = $W/meta
command_directory = $CMD_DIR
shlib_directory = $SHLIB_DIR
mail_owner = $MAIL_OWNER
setgid_group = $SETGID_GROUP
maillog_file = $LOG
maillog_file_prefixes = $W
myhostname = mx.lab.example
mydomain = lab.example
myorigin = \$myhostname
mydestination =
local_recipient_maps =
relay_domains =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtputf8_enable = yes
biff = no
append_dot_mydomain = no
smtpd_peername_lookup = no
smtpd_reject_unlisted_recipient = no
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access $ACCESS
smtpd_authorized_verp_clients = 127.0.0.1
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtp_dns_support_level = disabled
in_flow_delay = 0
delay_warning_time = 4h
default_transport = discard
transport_maps = $TRANSPORTS
EOF

write_master_cf() {   # $1 = "" (qmgr on) or "#" (qmgr service commented out)
    cat > "$ETC/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTPD_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
${1}qmgr      unix  n       -       n       300     1       oqmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
}

qmgr_pids() {   # oqmgr processes of this instance
    local pid a0
    for pid in $(session_pids "$MASTER_PID"); do
        { IFS= read -r -d '' a0 < "/proc/$pid/cmdline"; } 2> /dev/null || continue
        [[ $a0 == qmgr || $a0 == */oqmgr || $a0 == oqmgr ]] && echo "$pid"
    done
    return 0
}

set_qmgr() {   # set_qmgr on|off: rewrite master.cf, SIGHUP master, wait
    local i
    if [[ $1 == on ]]; then write_master_cf ""; else write_master_cf "#"; fi
    kill -HUP "$MASTER_PID"
    for ((i = 0; i < 100; i++)); do
        if [[ $1 == on ]]; then [[ -n $(qmgr_pids) ]] && return 0
        else [[ -z $(qmgr_pids) ]] && return 0; fi
        sleep 0.1
    done
    die "queue manager did not turn $1"
}

# Start with qmgr on (master then creates public/qmgr, so cleanup's trigger
# finds the socket), then take the service out: files stay in incoming/.
write_master_cf ""
postfix -c "$ETC" start < /dev/null > /dev/null 2>&1 || die "postfix start failed (see $LOG)"
for ((i = 0; i < 100; i++)); do
    if [[ -r $SPOOL/pid/master.pid ]]; then
        read -r MASTER_PID < "$SPOOL/pid/master.pid" || true
        [[ $MASTER_PID =~ ^[0-9]+$ && -d /proc/$MASTER_PID ]] && break
        MASTER_PID=
    fi
    sleep 0.1
done
[[ -n $MASTER_PID ]] || die "master did not come up"
for ((i = 0; i < 100; i++)); do
    awk -v h="$(printf '0100007F:%04X' "$SMTPD_PORT")" 'FNR > 1 && $2 == h && $4 == "0A" { f = 1 } END { exit !f }' \
        /proc/net/tcp && break
    sleep 0.1
done
set_qmgr off
note "instance $W up (master $MASTER_PID, smtpd 127.0.0.1:$SMTPD_PORT, qmgr paused)"

# ------------------------------------------------------------ injection ---

# One SMTP transaction. argv: PORT MAIL-FROM-LINE-TAIL BODYFILE RCPT-TAIL...
# (tails are what follows "MAIL FROM:" / "RCPT TO:", e.g. "<a@b> NOTIFY=NEVER").
# Prints the queue id from "250 ... queued as ID".
cat > "$W/smtp.py" <<'PYEOF'
import os, re, socket, sys
port, mail, bodyfile, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
s = socket.create_connection(("127.0.0.1", port), timeout=60)
f = s.makefile("rb")
def reply(want):
    lines = []
    while True:
        line = f.readline()
        if not line:
            sys.exit("smtp: connection closed")
        lines.append(line.rstrip(b"\r\n"))
        if line[3:4] != b"-":
            break
    if not lines[-1][:1] == want:
        sys.exit("smtp: unexpected reply: %r" % lines)
    return lines
def cmd(text, want=b"2"):
    s.sendall(text + b"\r\n")
    return reply(want)
reply(b"2")
cmd(b"EHLO client.example")
cmd(b"MAIL FROM:" + os.fsencode(mail))
for r in rcpts:
    cmd(b"RCPT TO:" + os.fsencode(r))
cmd(b"DATA", b"3")
body = open(bodyfile, "rb").read()
for line in body.split(b"\n")[:-1] if body.endswith(b"\n") else body.split(b"\n"):
    s.sendall((b"." if line.startswith(b".") else b"") + line + b"\r\n")
last = cmd(b".")[-1]
cmd(b"QUIT")
m = re.search(rb"queued as ([0-9A-Za-z]+)", last)
if not m:
    sys.exit("smtp: no queue id in %r" % last)
print(m.group(1).decode())
PYEOF

# Independent record dump: "OFFSET TYPE LENGTH DATA" per record, in file
# order (pointer records are not followed). OFFSET = file offset of the type
# byte, TYPE = the type byte as a character, LENGTH = data length, DATA with
# backslash as \\ and bytes outside 0x20..0x7e as \xNN.
cat > "$W/records.py" <<'PYEOF'
import sys
def records(buf):
    pos = 0
    while pos < len(buf):
        start, rtype, pos = pos, buf[pos], pos + 1
        length, shift = 0, 0
        while True:
            if pos >= len(buf):
                raise SystemExit("EOF in record length at offset %d" % start)
            b = buf[pos]; pos += 1
            length |= (b & 0x7f) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift >= 35:
                raise SystemExit("too many length bits at offset %d" % start)
        if pos + length > len(buf):
            raise SystemExit("EOF in record data at offset %d" % start)
        yield start, rtype, buf[pos:pos + length]
        pos += length
def esc(data):
    return "".join("\\\\" if b == 0x5c else chr(b) if 0x20 <= b <= 0x7e else "\\x%02x" % b
                   for b in data)
if __name__ == "__main__":
    buf = open(sys.argv[1], "rb").read()
    for off, t, data in records(buf):
        print(off, esc(bytes([t])), len(data), esc(data))
PYEOF

wait_ready() {   # wait_ready PATH: until the file exists with the owner x bit (0700)
    local i m
    for ((i = 0; i < 100; i++)); do
        if [[ -f $1 ]]; then
            m=$(stat -c %a "$1")
            [[ $m == 700 ]] && return 0
        fi
        sleep 0.1
    done
    die "$1 did not become ready (mode ${m:-missing})"
}

declare -A QID
CASES=()

send() {   # send CASE MAIL-TAIL BODYFILE RCPT-TAIL...
    local name=$1; shift
    local id
    id=$("$PY" "$W/smtp.py" "$SMTPD_PORT" "$@") || die "$name: SMTP transaction failed"
    QID[$name]=$id
    CASES+=("$name")
    note "$name: queued as $id"
}

take_incoming() {   # take_incoming CASE: copy incoming/ID out as OUT/CASE
    local name=$1 id=${QID[$1]}
    wait_ready "$SPOOL/incoming/$id"
    cp -- "$SPOOL/incoming/$id" "$OUT/$name"
    chmod 644 "$OUT/$name"   # git keeps only 644/755; the queue mode was 0700
}

msg() {   # msg FILE SUBJECT [BODY-LINE...]: a small RFC 5322 message
    local file=$1 subj=$2; shift 2
    {
        printf 'From: Sender <sender@src.example>\n'
        printf 'To: Someone <rcpt@d1.example>\n'
        printf 'Subject: %s\n' "$subj"
        printf 'Message-ID: <%s@make-queue-files.example>\n' "${subj// /-}"
        printf '\n'
        printf '%s\n' "$@"
    } > "$file"
}

rm -rf -- "$OUT.new"
mkdir -p "$OUT.new"
FINAL_OUT=$OUT
OUT=$OUT.new
NEW_OUT=$OUT   # removed by teardown on failure

# 1. plain
msg "$W/plain.txt" "plain" "Hello." "A line that starts with a dot follows:" ".dot" "Bye."
send plain "<sender@src.example>" "$W/plain.txt" "<rcpt@d1.example>"

# 2. many-rcpt: 300 recipients over 3 domains
msg "$W/many.txt" "many recipients" "One message, 300 recipients."
rc=()
for ((i = 1; i <= 300; i++)); do rc+=("<user$i@d$(((i - 1) % 3 + 1)).example>"); done
send many-rcpt "<sender@src.example>" "$W/many.txt" "${rc[@]}"

# 3. dsn: RET/ENVID and NOTIFY/ORCPT
msg "$W/dsn.txt" "dsn" "DSN parameters on MAIL FROM and RCPT TO."
send dsn "<sender@src.example> RET=HDRS ENVID=env-id-12345" "$W/dsn.txt" \
    "<notify-success-delay@d1.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig-rcpt@d1.example" \
    "<notify-never@d2.example> NOTIFY=NEVER" \
    "<notify-failure@d3.example> NOTIFY=FAILURE"

# 4. verp: XVERP with the default delimiters
msg "$W/verp.txt" "verp" "XVERP requested."
send verp "<list-bounces@src.example> XVERP" "$W/verp.txt" "<alice@d1.example>" "<bob@d2.example>"

# 5. 8bitmime: BODY=8BITMIME and 8-bit body bytes
{
    printf 'From: sender@src.example\nTo: rcpt@d1.example\nSubject: 8bitmime\n'
    printf 'MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\n'
    printf 'Content-Transfer-Encoding: 8bit\n\n'
    printf 'Caf\xe9 cr\xe8me br\xfbl\xe9e \xa4 \xff.\n'
} > "$W/8bit.txt"
send 8bitmime "<sender@src.example> BODY=8BITMIME" "$W/8bit.txt" "<rcpt@d1.example>"

# 6. smtputf8: SMTPUTF8 with a UTF-8 local part (and UTF-8 in a header)
{
    printf 'From: sender@src.example\nTo: j\xc3\xb6rg@d1.example\n'
    printf 'Subject: smtputf8 \xc3\xa9t\xc3\xa9\nMIME-Version: 1.0\n'
    printf 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n'
    printf 'Gr\xc3\xbc\xc3\x9fe.\n'
} > "$W/utf8.txt"
send smtputf8 "<sender@src.example> BODY=8BITMIME SMTPUTF8" "$W/utf8.txt" "<j$(printf '\xc3\xb6')rg@d1.example>"

# 7. filter: smtpd FILTER action -> L record in the extracted segment
msg "$W/filter.txt" "filter" "Content filter requested by an access map."
send filter "<sender@src.example>" "$W/filter.txt" "<filter@d1.example>"

# 9. redirect: smtpd REDIRECT action -> > record
msg "$W/redirect.txt" "redirect" "Redirected by an access map."
send redirect "<sender@src.example>" "$W/redirect.txt" "<redirect@d1.example>"

# extra: null sender (bounce-like): no W record is written for it
msg "$W/null.txt" "null sender" "Null reverse-path."
send null-sender "<>" "$W/null.txt" "<rcpt@d2.example>"

for c in "${CASES[@]}"; do take_incoming "$c"; done

# 8. partly-done: delivered by Debian's oqmgr; 2 of 3 recipients discarded
# (marked done), 1 deferred -> the file moves to deferred/.
postsuper -c "$ETC" -d ALL > /dev/null 2>&1   # the copies above are taken
set_qmgr on
msg "$W/partly.txt" "partly done" "Two recipients get delivered, one is deferred."
send partly-done "<sender@src.example>" "$W/partly.txt" \
    "<first@done.example>" "<later@later.example>" "<second@done.example>"
id=${QID[partly-done]}
hash=${id:0:1}   # default hash_queue_depth 1: first character of a short id
for ((i = 0; i < 300; i++)); do
    if [[ -f $SPOOL/deferred/$hash/$id ]] && grep -q "$id: to=<later@later.example>.*status=deferred" "$LOG" \
        && [[ ! -e $SPOOL/active/$id ]]; then
        break
    fi
    sleep 0.1
done
((i < 300)) || die "partly-done: $id did not reach deferred/"
[[ $(grep -c "$id: to=<.*@done.example>.*status=sent" "$LOG") == 2 ]] \
    || die "partly-done: expected 2 status=sent lines for $id"
set_qmgr off
wait_ready "$SPOOL/deferred/$hash/$id"
cp -- "$SPOOL/deferred/$hash/$id" "$OUT/partly-done"
chmod 644 "$OUT/partly-done"
# The log lines of that message (the queue manager logs as postfix/oqmgr: the
# syslog name is the command name in master.cf).
grep -F " $id: " "$LOG" | sed "s|$W|WORKDIR|g" > "$OUT/partly-done.maillog"

# ------------------------------------------------------------- listings ---

POSTCAT_FLAGS=-bdehor
for c in "${CASES[@]}"; do
    (cd "$OUT" && postcat -c "$ETC" $POSTCAT_FLAGS "$c" > "$c.postcat" 2> "$W/postcat.err") \
        || { cat "$W/postcat.err" >&2; die "postcat failed on $c"; }
    [[ ! -s $W/postcat.err ]] || { cat "$W/postcat.err" >&2; die "postcat complained about $c"; }
    "$PY" "$W/records.py" "$OUT/$c" > "$OUT/$c.records"
done

# ---------------------------------------------------------------- checks ---

# Which records prove each case (see README.md); fails the run if missing.
cat > "$W/check.py" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
from records import records
out = sys.argv[2]
def load(name):
    return list(records(open("%s/%s" % (out, name), "rb").read()))
def t(recs, c):
    return [d for _, ty, d in recs if ty == ord(c)]
def segments(recs):
    env, xtr, seg = [], [], "env"
    for r in recs:
        if r[1] == ord("M"): seg = "content"
        elif r[1] == ord("X"): seg = "xtra"
        if seg == "env": env.append(r)
        elif seg == "xtra": xtr.append(r)
    return env, xtr
def size(recs):
    return [int(x) for x in t(recs, "C")[0].split()]
problems = []
def need(case, cond, what):
    print("%-12s %-4s %s" % (case, "ok" if cond else "FAIL", what))
    if not cond: problems.append("%s: %s" % (case, what))
cases = sys.argv[3:]
for c in cases:
    r = load(c)
    need(c, r[0][1] == ord("C") and len(r[0][2]) == 95, "first record C, 95 bytes")
    need(c, r[-1][1] == ord("E"), "last record E")
    for ty in "TSMXE":
        need(c, len(t(r, ty)) >= 1, "has %s" % ty)
    if c != "null-sender":
        need(c, len(t(r, "W")) == 1, "has one W (delay_warning_time)")
env, xtr = {}, {}
def attrs(recs):
    return [d for d in t(recs, "A")]
R = {c: load(c) for c in cases}
need("plain", len(t(R["plain"], "R")) == 1, "one R")
need("many-rcpt", len(t(R["many-rcpt"], "R")) == 300 and size(R["many-rcpt"])[2] == 300,
     "300 R records, C field 3 = 300")
d = R["dsn"]
need("dsn", any(a.startswith(b"ret_flags=") for a in attrs(d)) or t(d, "<"), "RET (A ret_flags= or <)")
need("dsn", any(a.startswith(b"envelope_id=") for a in attrs(d)) or t(d, "i"), "ENVID (A envelope_id= or i)")
need("dsn", sum(a.startswith(b"notify_flags=") for a in attrs(d)) + len(t(d, "n")) == 3, "3 NOTIFY (A notify_flags= or n)")
need("dsn", sum(a.startswith(b"dsn_orig_rcpt=") for a in attrs(d)) + len(t(d, "o")) >= 1, "ORCPT (A dsn_orig_rcpt= or o)")
need("dsn", size(d)[3] != 0, "C field 4 (qmgr flags) has DSN notify bits")
need("verp", len(t(R["verp"], "V")) == 1, "V record")
need("8bitmime", b"encoding=8bit" in attrs(R["8bitmime"]), "A encoding=8bit")
need("smtputf8", size(R["smtputf8"])[5] & 1 == 1, "C field 6 has SMTPUTF8 requested bit")
need("smtputf8", any(b"\xc3\xb6" in x for x in t(R["smtputf8"], "R")), "UTF-8 R record")
fe, fx = segments(R["filter"])
need("filter", any(ty == ord("L") for _, ty, _ in fx), "L record in the extracted segment")
need("redirect", len(t(R["redirect"], ">")) == 1, "> record")
need("null-sender", t(R["null-sender"], "S") == [b""] and not t(R["null-sender"], "W"), "empty S, no W")
p = R["partly-done"]
need("partly-done", len(t(p, "D")) == 2 and len(t(p, "R")) == 1, "2 D records, 1 R record")
if problems:
    sys.exit("checks failed: " + "; ".join(problems))
PYEOF
"$PY" "$W/check.py" "$W" "$OUT" "${CASES[@]}"

# ---------------------------------------------------------------- README ---

{
    echo "# case queue_id (as written by cleanup; the file is stored under the case name)"
    for c in "${CASES[@]}"; do echo "$c ${QID[$c]}"; done
} > "$OUT/queue-ids.txt"
sed -n '/^#==README==$/,$p' "$0" | sed '1d; s/^# \{0,1\}//' \
    | sed "s/@PF_VERSION@/$PF_VERSION/; s/@POSTCAT_FLAGS@/$POSTCAT_FLAGS/" > "$OUT/README.md"
{
    echo
    echo "## Queue ids of this generation"
    echo
    echo '| case | original queue id |'
    echo '|---|---|'
    for c in "${CASES[@]}"; do echo "| \`$c\` | \`${QID[$c]}\` |"; done
    echo
    echo "Generated $(date -u +%F) with Postfix $PF_VERSION (cleanup, smtpd, oqmgr of the Debian package)."
} >> "$OUT/README.md"

rm -rf -- "$FINAL_OUT"
mv -- "$OUT" "$FINAL_OUT"
note "wrote ${#CASES[@]} cases to $FINAL_OUT"
exit 0

#==README==
# # Queue file test vectors
#
# Real Postfix queue files, written by the real cleanup(8) of Postfix
# @PF_VERSION@ (Debian 12 package) from SMTP transactions on a private, loopback-only
# instance. `partly-done` was then delivered in part by Debian's C oqmgr(8).
# All of this directory is generated; do not edit by hand. Regenerate (as root):
#
#     bash tests/data/make-queue-files.sh
#
# (a private instance in a fresh /tmp/make-queue-files.XXXXXX, never
# /etc/postfix or /var/spool/postfix; smtpd on 127.0.0.1; stopped and removed
# on exit; `KEEP=1` keeps the stopped instance). The script fails unless every
# record listed below is present. Time stamps, ports and queue ids change
# with every run, so tests must not hard-code them except from these files.
#
# ## Files
#
# For each case `CASE`:
#
# * `CASE` - the queue file, byte for byte (stored mode 0644; in the queue it
#   was 0700). The file name is the case; the queue id is in `queue-ids.txt`
#   and the table at the end.
# * `CASE.postcat` - `postcat -c CONFDIR @POSTCAT_FLAGS@ CASE`, run in this
#   directory (`-b` body, `-e` envelope, `-h` headers, `-o` file offset of
#   each record, `-d` decimal record type, `-r` records in file order without
#   following pointer records). postcat exited 0 with nothing on stderr.
#   postcat needs some main.cf: on this machine /etc/postfix/main.cf does not
#   exist, so give `-c DIR` with a DIR holding an (even empty) main.cf.
#   Its dates are shown in UTC (the script sets TZ=UTC).
# * `CASE.records` - an independent dump (Python in the script, not
#   postcat), one line per record in file order, pointer records not
#   followed: `OFFSET TYPE LENGTH DATA`, single spaces. OFFSET: decimal file
#   offset of the type byte. TYPE: the type byte as a character. LENGTH:
#   decimal data length. DATA: the rest of the line; `\` is written `\\` and
#   every byte outside 0x20..0x7e as `\xNN` (lowercase hex); empty data
#   leaves a trailing space after LENGTH.
# * `queue-ids.txt` - `CASE QUEUE_ID` lines (comment line first).
# * `partly-done.maillog` - the instance's log lines for that message
#   (smtpd, cleanup, oqmgr, discard, error); the queue manager logs as
#   `postfix/oqmgr` because that is the command name in master.cf.
#
# ## Cases and the records that prove them
#
# All instance settings: `delay_warning_time = 4h` (so every file with a
# non-empty sender has one `W` record = arrival + 14400), `smtputf8_enable =
# yes`, default `enable_long_queue_ids = no` (short hex ids),
# `default_transport = discard`.
#
# | case | how it was made | records that prove it |
# |---|---|---|
# | `plain` | 1 recipient, small body (with a line starting with `.`) | `C` (95 bytes, 6 fields), `T`, `A create_time=`, `S`, `W`, `A dsn_orig_rcpt=`, `O`, `R`, `M`, `N`..., `X`, `E` |
# | `many-rcpt` | 300 `RCPT TO` over `d1.example`..`d3.example` | 300 `R` (each with `A dsn_orig_rcpt=` + `O`), `C` field 3 = 300 |
# | `dsn` | `MAIL FROM:<..> RET=HDRS ENVID=env-id-12345`; `NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig-rcpt@d1.example`, `NOTIFY=NEVER`, `NOTIFY=FAILURE` | `A envelope_id=env-id-12345`, `A ret_flags=2` (both before `S`), `A notify_flags=10` / `=1` / `=4` before each recipient, `A dsn_orig_rcpt=rfc822;orig-rcpt@d1.example`; `C` field 4 = 30 (union of the NOTIFY bits << 1) |
# | `verp` | `MAIL FROM:<list-bounces@src.example> XVERP`, 2 recipients | `V` = `+=` (after the client attributes, before `W`) |
# | `8bitmime` | `BODY=8BITMIME`, ISO-8859-1 body bytes | `A encoding=8bit` twice: envelope (from smtpd) and extracted segment (from cleanup's MIME check) |
# | `smtputf8` | `BODY=8BITMIME SMTPUTF8`, recipient `jörg@d1.example` (UTF-8), UTF-8 `Subject:` | `C` field 6 = 3 (requested + header), `R`/`O`/`A dsn_orig_rcpt=` with raw UTF-8 bytes, `A encoding=8bit` twice |
# | `filter` | smtpd `check_recipient_access` action `FILTER myfilter:[127.0.0.1]:10025` | `L myfilter:[127.0.0.1]:10025` in the extracted segment (after `X`) |
# | `redirect` | smtpd `check_recipient_access` action `REDIRECT other@d3.example` | `> other@d3.example` in the extracted segment |
# | `null-sender` | `MAIL FROM:<>` | empty `S` (length 0), no `W` |
# | `partly-done` | 3 recipients; oqmgr ran: `done.example` -> `discard` (2 sent), `later.example` -> `retry:` (error(8) as retry: deferred); taken from `deferred/` | 2 `D` (the discard agent overwrote the `R` type byte: same offset and length), 1 `R`; `W` unchanged |
#
# Cases 1-7, 9 and `null-sender` were taken from `incoming/` while no queue
# manager ran (qmgr service commented out of master.cf), right after smtpd's
# `250 ... queued as ID` and once the file mode was 0700.
#
# ## What cleanup actually wrote (envelope order)
#
# `C`, `T` (`sec usec`), `A create_time=`, `A log_ident=<queue id>`,
# `A rewrite_context=local`, [`A envelope_id=`, `A ret_flags=`], `S`,
# [`A encoding=`], the `A log_client_*`/`log_message_origin`/`log_helo_name`/
# `log_protocol_name` and `client_*`/`reverse_client_name`/`server_*`/
# `helo_name`/`protocol_name`/`client_address_type` attributes, [`V`], `W`
# (not for a null sender), then per recipient [`A notify_flags=`],
# `A dsn_orig_rcpt=rfc822;...` (smtpd supplies one even without ORCPT), `O`,
# `R`; then `M` (length 0). Content: `N` records only here (no `L`, `w` or
# `p`). Extracted: `X`, [`L` filter], [`>`], [`A encoding=`], `E`.
# No pointer (`p`) records are written at all (no milters), there is no
# `A trace_flags=`, and the DSN pseudo types `<`, `i`, `n`, `o` never appear as
# record types: they are `A ret_flags=`, `A envelope_id=`, `A notify_flags=`,
# `A dsn_orig_rcpt=`.
