#!/usr/bin/env bash
# The kernel matrix: boot other kernels in QEMU, probe each, run a small functional suite in it,
# and bring the results back as normal run directories under results/ for `zclab compare`.
#
#   scripts/kernel-matrix.sh 6.1 6.12                 # Debian's 6.1 and 6.12 kernels
#   scripts/kernel-matrix.sh --host --compare 6.1 6.12  # plus the host itself, then compare
#   scripts/kernel-matrix.sh ~/linux/arch/x86/boot/bzImage:/lib/modules/6.15.0
#   scripts/kernel-matrix.sh --probe-only 6.1          # just what the kernel offers
#
# A KERNEL is one of:
#   6.1, 6.12, ...       the newest Debian package of that series (`apt-cache search`), fetched
#                        with `apt-get download` and unpacked with `dpkg-deb -x` into
#                        ~/.cache/zclab/kernels (nothing is installed into /boot)
#   linux-image-NAME     that Debian package
#   PATH[:MODULES]       a bzImage you built, and optionally its lib/modules/<release> directory
#
# Each guest gets a busybox initramfs with the lab's static binaries, scripts/matrix/init as
# /init, and the plan (scripts/matrix/plan.txt, or --plan). The guest sends its run directory
# back over a second serial port. A kernel that does not boot, panics or hangs ends with an
# error after --timeout seconds and no QEMU process is left; the other kernels still run.
#
# KVM is used where it works; otherwise (no /dev/kvm, no VT-x/AMD-V, or a paravirtual KVM such
# as kvm_pvm that cannot boot stock kernels) QEMU emulates the CPU (TCG). The accelerator is
# recorded in every meta.json (`accelerator`): TCG results show capabilities and behaviour, not
# speed. Exit status: 0 every kernel ran its plan, 1 some kernel failed, 2 bad usage.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/scripts/matrix
prog='kernel-matrix'

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --flavour F       Debian kernel flavour: cloud (default, smaller) or amd64
  --accel A         auto (default), kvm or tcg
  --timeout S       seconds one kernel may take, boot to power-off (default 300)
  --plan FILE       experiments to run in the guest (default scripts/matrix/plan.txt)
  --probe-only      boot and probe, run no experiment
  --results DIR     where run directories go (default results/)
  --bin-dir DIR     use the lab binaries in DIR instead of building static ones
  --modules LIST    kernel modules to ship and load, comma-separated (default veth)
  --memory MIB      guest memory (default 1024)
  --cpus N          guest CPUs (default 2: the experiments pin sender and peer apart)
  --append ARGS     extra kernel command line
  --host            also run the plan natively on this machine (the compare's base)
  --compare         run `zclab compare` over the runs at the end (also written as Markdown)
  --install-deps    run scripts/matrix/deps.sh first (needs root)
  --keep            keep the work directory (initramfs, console logs)
  -h, --help        this text
EOF
}

die() {
  echo "$prog: $*" >&2
  exit 2
}
note() { echo "$prog: $*" >&2; }

flavour=cloud accel=auto timeout_s=300 plan=$here/plan.txt probe_only=0 results=$repo/results
bin_dir='' modules=veth memory=1024 cpus=2 append='' host_run=0 do_compare=0 install_deps=0 keep=0
kernels=()
while (($#)); do
  case $1 in
    --flavour) flavour=${2:?--flavour needs a value}; shift 2 ;;
    --accel) accel=${2:?--accel needs a value}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    --plan) plan=${2:?--plan needs a file}; shift 2 ;;
    --probe-only) probe_only=1; shift ;;
    --results) results=${2:?--results needs a directory}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --modules) modules=${2?--modules needs a list}; shift 2 ;;
    --memory) memory=${2:?--memory needs MiB}; shift 2 ;;
    --cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
    --append) append=${2?--append needs a value}; shift 2 ;;
    --host) host_run=1; shift ;;
    --compare) do_compare=1; shift ;;
    --install-deps) install_deps=1; shift ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; kernels+=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) kernels+=("$1"); shift ;;
  esac
done
((${#kernels[@]})) || die "name at least one kernel, e.g. 6.1 6.12 (see --help)"
[[ $accel =~ ^(auto|kvm|tcg)$ ]] || die "--accel must be auto, kvm or tcg, not '$accel'"
[[ $flavour =~ ^(cloud|amd64)$ ]] || die "--flavour must be cloud or amd64, not '$flavour'"
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -ge 5 ]] || die "--timeout must be whole seconds >= 5"
[[ $memory =~ ^[0-9]+$ && $memory -ge 128 ]] || die "--memory must be MiB >= 128"
[[ $cpus =~ ^[0-9]+$ && $cpus -ge 1 ]] || die "--cpus must be a number >= 1"
[[ -f $plan ]] || die "plan $plan not found"
[[ $modules =~ ^[A-Za-z0-9_,-]*$ ]] || die "--modules takes names separated by commas"
[[ $append != *$'\n'* ]] || die "--append must be one line"
((do_compare && probe_only)) && die "--compare needs experiment results: drop --probe-only"

((install_deps)) && bash "$here/deps.sh"
for tool in qemu-system-x86_64 busybox gzip base64 sha256sum timeout; do
  command -v "$tool" >/dev/null ||
    die "$tool not found: run scripts/matrix/deps.sh as root (or pass --install-deps)"
done

cache=${ZCLAB_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zclab/kernels}
work=$(mktemp -d "${TMPDIR:-/tmp}/zclab-matrix.XXXXXX")
qpid=
# A QEMU still running when we stop (Ctrl-C, error) is killed with its whole process group.
# shellcheck disable=SC2317  # reached through the traps
cleanup() {
  if [[ -n $qpid ]]; then
    {
      kill -KILL -- "-$qpid" || kill -KILL "$qpid"
      wait "$qpid"
    } 2>/dev/null || true
  fi
  if ((keep)); then note "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# fd 9 keeps the script's stderr for the traps: a signal can arrive while stderr is redirected.
exec 9>&2
trap 'note "interrupted" 2>&9; exit 130' INT
trap 'note "terminated" 2>&9; exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The lab's binaries for the guest: static, so the initramfs needs no libc.
plan_exps=$(grep -v '^[[:space:]]*#' "$plan" | awk 'NF {print $1}')
if [[ -z $bin_dir ]]; then
  target=x86_64-unknown-linux-gnu
  note "building static binaries (cargo build --release --target $target, crt-static; minutes the first time)"
  (cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --quiet \
    --target "$target" --bins) || { echo "$prog: static build failed" >&2; exit 1; }
  bin_dir=${CARGO_TARGET_DIR:-$repo/target}/$target/release
fi
[[ -x $bin_dir/zclab ]] || die "$bin_dir/zclab not found (build it, or fix --bin-dir)"

# Copies a program and, when it is dynamically linked, the libraries it loads, into $1.
copy_with_libs() {
  local root=$1 src=$2 dst=$3 lib
  install -D -m 0755 "$src" "$root$dst"
  if ldd "$src" >/dev/null 2>&1; then
    for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
      [[ -e $root$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
    done
  fi
}

# The part of the initramfs every kernel shares.
base=$work/base
mkdir -p "$base"/{bin,sbin,etc,proc,sys,dev,tmp,results,matrix,lib/modules}
copy_with_libs "$base" "$(command -v busybox)" /bin/busybox
for applet in $("$base/bin/busybox" --list); do
  [[ -e $base/bin/$applet ]] || ln -s busybox "$base/bin/$applet"
done
# iproute2's ip can do network namespaces, which busybox's cannot.
if host_ip=$(command -v ip) && [[ $("$host_ip" -V 2>&1) == *iproute2* ]]; then
  rm -f "$base/bin/ip"
  copy_with_libs "$base" "$(readlink -f "$host_ip")" /bin/ip
fi
# The lab's binaries, without their debug line tables: a smaller archive boots faster.
copy_lab_bin() {
  copy_with_libs "$base" "$1" "$2"
  if command -v strip >/dev/null; then strip --strip-debug "$base$2" 2>/dev/null || true; fi
}
copy_lab_bin "$bin_dir/zclab" /bin/zclab
for exp in $plan_exps; do
  if [[ -x $bin_dir/$exp ]]; then
    copy_lab_bin "$bin_dir/$exp" "/bin/$exp"
  else
    note "plan names $exp but $bin_dir/$exp is not built: the guest will list it as not run"
  fi
done
install -m 0755 "$here/init" "$base/init"
install -m 0644 "$plan" "$base/matrix/plan.txt"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$base/etc/group"
if command -v cpio >/dev/null; then cpio_cmd=(cpio --quiet -o -H newc); else cpio_cmd=(busybox cpio -o -H newc); fi
(cd "$base" && find . | LC_ALL=C sort | "${cpio_cmd[@]}" | gzip -1) >"$work/base.cpio.gz"

# ---------------------------------------------------------------------------------------------
# Kernels.

# Newest Debian package for a series such as 6.1 (flavour cloud or amd64).
arch_flavour=amd64
[[ $flavour == cloud ]] && arch_flavour=cloud-amd64
debian_package() {
  local series=$1 re
  re="^linux-image-${series//./\\.}(\\.[0-9]+)*(-[0-9]+)?(\\+deb[0-9]+)?-${arch_flavour}-unsigned\$"
  { apt-cache search --names-only "^linux-image-${series//./\\.}" 2>/dev/null || true; } |
    awk '{print $1}' | { grep -E "$re" || true; } | sort -V | tail -n1
}

# Downloads and unpacks a Debian kernel package into the cache (once); prints its directory.
fetch_debian() {
  local pkg=$1 ver dir tmp rel
  ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
  [[ -n $ver ]] || { echo "package $pkg is unknown to apt (apt-get update?)" >&2; return 1; }
  dir=$cache/${pkg}_${ver//:/_}
  if [[ -f $dir/vmlinuz && -f $dir/release ]]; then
    echo "$dir"
    return 0
  fi
  mkdir -p "$cache"
  # One fetch at a time per cache (parallel matrix runs share it).
  exec {lock}>"$cache/.lock"
  flock "$lock"
  if [[ -f $dir/vmlinuz && -f $dir/release ]]; then
    echo "$dir"
    return 0
  fi
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  note "downloading $pkg $ver"
  if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null 2>"$tmp/apt.err"); then
    echo "apt-get download $pkg=$ver failed: $(tail -n1 "$tmp/apt.err")" >&2
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$tmp/x"
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  mkdir -p "$tmp/k/root/lib/modules"
  mv "$tmp"/x/boot/vmlinuz-* "$tmp/k/vmlinuz"
  rel=$(basename "$tmp"/x/boot/config-*)
  rel=${rel#config-}
  mv "$tmp"/x/boot/config-* "$tmp/k/config"
  local mods
  for mods in "$tmp/x/lib/modules/$rel" "$tmp/x/usr/lib/modules/$rel"; do
    [[ -d $mods ]] && mv "$mods" "$tmp/k/root/lib/modules/$rel"
  done
  echo "$rel" >"$tmp/k/release"
  printf '%s %s\n' "$pkg" "$ver" >"$tmp/k/package"
  rm -rf "$dir"
  mv "$tmp/k" "$dir"
  rm -rf "$tmp"
  echo "$dir"
}

# The release string a bzImage carries (its setup header points at it), or nothing.
bzimage_release() {
  local f=$1 off
  [[ $(od -An -c -j 0x202 -N 4 "$f" 2>/dev/null | tr -d ' ') == HdrS ]] || return 0
  off=$(od -An -tu2 -j 0x20e -N 2 "$f" | tr -d ' ')
  [[ -n $off ]] || return 0
  dd if="$f" bs=1 skip=$((off + 0x200)) count=120 status=none | tr '\0' '\n' | head -n1 | awk '{print $1}'
}

# Module files (with dependencies) for the guest: writes $2/lib/modules/<release>.
add_modules() {
  local mroot=$1 out=$2 rel=$3 m line f dst dep
  [[ -n $modules && -d $mroot/lib/modules/$rel ]] || return 0
  local mdir=$mroot/lib/modules/$rel
  [[ -f $mdir/modules.dep ]] || busybox depmod -b "$mroot" "$rel" 2>/dev/null || return 0
  local want=() files=()
  IFS=, read -ra want <<<"$modules"
  for m in "${want[@]}"; do
    m=${m//-/_}
    line=$(awk -v m="$m" -F: '{ n = $1; sub(/.*\//, "", n); sub(/\.ko.*/, "", n); gsub(/-/, "_", n);
      if (n == m) { print; exit } }' "$mdir/modules.dep")
    [[ -n $line ]] || continue
    files+=("${line%%:*}")
    for dep in ${line#*:}; do files+=("$dep"); done
  done
  ((${#files[@]})) || return 0
  mkdir -p "$out/lib/modules/$rel"
  : >"$out/lib/modules/$rel/modules.dep"
  for f in $(printf '%s\n' "${files[@]}" | sort -u); do
    dst=$out/lib/modules/$rel/${f%.ko*}.ko
    mkdir -p "$(dirname "$dst")"
    case $f in
      *.ko) cp "$mdir/$f" "$dst" ;;
      *.ko.xz) xz -dc "$mdir/$f" >"$dst" ;;
      *.ko.gz) gzip -dc "$mdir/$f" >"$dst" ;;
      *.ko.zst) zstd -qdc "$mdir/$f" >"$dst" 2>/dev/null || { rm -f "$dst"; continue; } ;;
    esac
  done
  # modules.dep for what was shipped, with the decompressed names.
  sed -E 's/\.ko\.(xz|gz|zst)/.ko/g' "$mdir/modules.dep" | while IFS= read -r line; do
    [[ -f $out/lib/modules/$rel/${line%%:*} ]] && echo "$line"
  done >"$out/lib/modules/$rel/modules.dep"
}

# ---------------------------------------------------------------------------------------------
# Accelerator.
kvm_reason=
kvm_usable() {
  if [[ ! -e /dev/kvm ]]; then kvm_reason="no /dev/kvm"; return 1; fi
  if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then kvm_reason="/dev/kvm is not accessible to $(id -un)"; return 1; fi
  if [[ -d /sys/module/kvm_pvm ]]; then
    kvm_reason="/dev/kvm is a paravirtual KVM (kvm_pvm) that cannot boot stock kernels"
    return 1
  fi
  if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
    kvm_reason="the CPU shows no VT-x/AMD-V (vmx/svm)"
    return 1
  fi
  return 0
}
case $accel in
  tcg) use_accel=tcg; accel_why="--accel tcg" ;;
  kvm) kvm_usable || die "--accel kvm: $kvm_reason"; use_accel=kvm; accel_why="--accel kvm" ;;
  auto)
    if kvm_usable; then use_accel=kvm; accel_why="KVM available"
    else use_accel=tcg; accel_why="software emulation: $kvm_reason"; fi ;;
esac
note "accelerator: $use_accel ($accel_why)"

n_exps=$(wc -w <<<"$plan_exps")
exp_timeout=$(((timeout_s - 30) / (n_exps > 0 ? n_exps : 1)))
((exp_timeout >= 10)) || exp_timeout=10

# Seconds a KVM guest may stay silent before KVM is taken as unable to run it (auto only).
kvm_grace=${ZCLAB_KVM_GRACE:-30}
kvm_broken=''
# Boots one kernel. On success sets $run_out to the run directory it brought back; on failure
# returns 1 with the reason in $fail_msg. Runs in this shell (not a subshell), so that the
# traps know $qpid.
fail_msg='' run_out=''
boot_one() {
  local label=$1 vmlinuz=$2 rel=$3 mroot=$4 kw=$5 acc=$6
  local extra=$kw/extra initrd=$kw/initrd.cpio.gz rc
  mkdir -p "$extra"
  add_modules "$mroot" "$extra" "$rel"
  cp "$work/base.cpio.gz" "$initrd"
  if [[ -d $extra/lib ]]; then
    (cd "$extra" && find . | LC_ALL=C sort | "${cpio_cmd[@]}" | gzip -1) >>"$initrd"
  fi
  local cmdline="console=ttyS0 panic=-1 rdinit=/init zclab.accel=$acc zclab.exptimeout=$exp_timeout"
  ((probe_only)) && cmdline+=" zclab.probeonly=1"
  # Under emulation the timer runs slow against the guest's expectations: 6.1 panics in its
  # IO-APIC timer check ("IO-APIC + timer doesn't work!") unless the check is skipped.
  [[ $acc == tcg ]] && cmdline+=" no_timer_check"
  [[ -n $modules ]] && cmdline+=" zclab.modules=$modules"
  [[ -n $append ]] && cmdline+=" $append"
  local accel_args=(-accel tcg -cpu max)
  [[ $acc == kvm ]] && accel_args=(-accel kvm -cpu host)
  : >"$kw/console.log"
  : >"$kw/data.txt"
  local qemu=(qemu-system-x86_64 "${accel_args[@]}" -smp "$cpus" -m "$memory"
    -kernel "$vmlinuz" -initrd "$initrd" -append "$cmdline"
    -nodefaults -display none -no-reboot -monitor none
    -serial "file:$kw/console.log" -serial "file:$kw/data.txt")
  printf '%q ' "${qemu[@]}" >"$kw/qemu.cmd"
  # timeout puts itself and QEMU in a new process group; on expiry it signals the whole group
  # (TERM, then KILL after 10 s).
  timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null >"$kw/qemu.out" 2>&1 9>&- &
  qpid=$!
  rc=0 kvm_broken=''
  if [[ $acc == kvm && $accel == auto ]]; then
    # A KVM that cannot run stock kernels either reports an emulation failure or hangs with
    # an empty console; a working one prints the kernel's first lines within a second or two.
    local t_start=$SECONDS
    while kill -0 "$qpid" 2>/dev/null; do
      if grep -q 'KVM internal error' "$kw/qemu.out"; then
        kvm_broken="KVM internal error"
      elif [[ ! -s $kw/console.log ]] && ((SECONDS - t_start >= kvm_grace)); then
        kvm_broken="no console output under KVM after $kvm_grace s"
      fi
      if [[ -n $kvm_broken ]]; then
        kill -KILL -- "-$qpid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  fi
  # (quietly: bash would report a killed job on stderr)
  { wait "$qpid"; } 2>/dev/null || rc=$?
  if [[ -n $kvm_broken ]]; then
    qpid=''
    fail_msg="KVM could not run this kernel ($kvm_broken)"
    return 1
  fi
  if pgrep -g "$qpid" >/dev/null 2>&1; then
    kill -KILL -- "-$qpid" 2>/dev/null || true
    sleep 1
  fi
  qpid=
  local last
  last=$(tr -d '\r' <"$kw/console.log" | grep -v '^[[:space:]]*$' | tail -n 5 | sed 's/^/    | /')
  local panic
  panic=$(tr -d '\r' <"$kw/console.log" | grep -m1 -E 'Kernel panic|BUG:|Oops' | sed 's/^\[[ 0-9.]*\] //' || true)
  if ((rc == 124 || rc == 137)); then
    fail_msg="timed out after $timeout_s s${panic:+ (after: $panic)}"
  elif [[ -n $panic ]]; then
    fail_msg="kernel failed: $panic"
  elif ((rc != 0)); then
    fail_msg="qemu exited with status $rc: $(grep -v '^$' "$kw/qemu.out" | tail -n1)"
  elif ! grep -q 'zclab-init: booted' "$kw/console.log"; then
    fail_msg="the kernel stopped before /init ran"
  elif ! grep -q '^ZCLAB-DATA-END ' "$kw/data.txt"; then
    fail_msg="the guest sent no results"
  fi
  if [[ -n $fail_msg ]]; then
    [[ -n $last ]] && fail_msg+=$'\n'"  last console lines:"$'\n'"$last"
    local qtail
    qtail=$(grep -v '^$' "$kw/qemu.out" | tail -n2 | tr '\n' ' ')
    [[ -n $qtail && $fail_msg != *"$qtail"* ]] && fail_msg+=$'\n'"  qemu: $qtail"
    return 1
  fi
  # Decode the run directory and check its sha256.
  local begin run sum
  tr -d '\r' <"$kw/data.txt" >"$kw/data.clean"
  begin=$(grep -m1 '^ZCLAB-DATA-BEGIN ' "$kw/data.clean")
  run=${begin#ZCLAB-DATA-BEGIN }
  sum=$(grep -m1 '^ZCLAB-DATA-END ' "$kw/data.clean")
  sum=${sum#ZCLAB-DATA-END }
  if [[ ! $run =~ ^[A-Za-z0-9._=,+@-]+$ ]]; then
    fail_msg="the guest sent a bad run name '$run'"
    return 1
  fi
  sed -n '/^ZCLAB-DATA-BEGIN /,/^ZCLAB-DATA-END /p' "$kw/data.clean" | sed '1d;$d' |
    base64 -d >"$kw/run.tgz" 2>/dev/null || true
  if [[ $(sha256sum "$kw/run.tgz" | cut -d' ' -f1) != "$sum" ]]; then
    fail_msg="the results came back damaged (sha256 mismatch)"
    return 1
  fi
  mkdir -p "$results"
  if [[ -e $results/$run ]]; then
    fail_msg="$results/$run exists already; not overwritten"
    return 1
  fi
  if ! tar -xzf "$kw/run.tgz" -C "$results" --no-same-owner; then
    fail_msg="cannot unpack the results into $results"
    return 1
  fi
  tr -d '\r' <"$kw/console.log" >"$results/$run/console.log"
  run_out=$results/$run
}

# Writes the host's side of a kernel's run into matrix.json of its run directory.
write_matrix_json() {
  local dir=$1 kernel=$2 pkg=$3 acc=$4 why=$5 secs=$6
  local qv
  qv=$(qemu-system-x86_64 --version | head -n1)
  python3 - "$dir/matrix.json" "$kernel" "$pkg" "$acc" "$why" "$secs" "$qv" "$timeout_s" \
    "$dir/matrix-guest.txt" <<'EOF' 2>/dev/null || true
import json, sys
out, kernel, pkg, acc, why, secs, qv, tmo, guest = sys.argv[1:]
exps = {}
try:
    for line in open(guest):
        p = line.split()
        if len(p) == 2:
            exps[p[0]] = int(p[1]) if p[1].isdigit() else p[1]
except OSError:
    pass
name, _, version = pkg.partition(" ")
json.dump({"kernel": kernel, "package": name or None, "package_version": version or None,
           "kernel_file": None if pkg else kernel, "accelerator": acc,
           "accelerator_reason": why, "wall_seconds": float(secs), "qemu": qv,
           "timeout_seconds": int(tmo), "experiments_exit": exps,
           "timing_note": None if acc == "kvm" else
           "software emulation: capabilities and behaviour only, timings not comparable"},
          open(out, "w"), indent=2)
EOF
}

# ---------------------------------------------------------------------------------------------
runs=()
summary=()
failed=0

if ((host_run)); then
  note "host: running the plan natively on $(uname -r)"
  hrun=$(printf '%s-%s-%s' "$(hostname)" "$(uname -r)" "$(date -u +%Y%m%dT%H%M%SZ)" | tr -c 'A-Za-z0-9._=,+@-' '_')
  mkdir -p "$results/$hrun"
  host_ok=1
  if ((!probe_only)); then
    while read -r exp args; do
      [[ -x $bin_dir/$exp ]] || continue
      [[ " $args " == *" --repeat"* ]] || args="--repeat 1 $args"
      [[ " $args " == *" --warmup"* ]] || args="--warmup 0 $args"
      # shellcheck disable=SC2086  # the plan's arguments are split on purpose
      ZCLAB_ACCEL=native "$bin_dir/$exp" --run-dir "$results/$hrun" --quiet $args </dev/null || {
        rc=$?
        ((rc == 77)) || host_ok=0
      }
    done < <(grep -v '^[[:space:]]*#' "$plan" | awk 'NF')
  fi
  "$bin_dir/zclab" probe --json --dir "$results" >"$results/$hrun/probe.json"
  runs+=("$results/$hrun")
  if ((host_ok)); then summary+=("host $(uname -r) [native]: ok -> $results/$hrun")
  else summary+=("host $(uname -r) [native]: some experiments failed -> $results/$hrun"); failed=1; fi
fi

i=0
for k in "${kernels[@]}"; do
  i=$((i + 1))
  kw=$work/k$i
  mkdir -p "$kw"
  pkg='' pkg_ver='' rel='' vmlinuz='' mroot=''
  if [[ $k == */* || -f $k ]]; then
    vmlinuz=${k%%:*}
    mdir=
    [[ $k == *:* ]] && mdir=${k#*:}
    if [[ ! -f $vmlinuz ]]; then
      summary+=("$k: FAILED: $vmlinuz not found"); failed=1; continue
    fi
    if [[ $(od -An -c -j 0x202 -N 4 "$vmlinuz" 2>/dev/null | tr -d ' ') != HdrS ]]; then
      summary+=("$k: FAILED: $vmlinuz is not a bzImage (no 'HdrS' boot header)"); failed=1
      note "$k: FAILED: not a bzImage"
      continue
    fi
    rel=$(bzimage_release "$vmlinuz")
    if [[ -n $mdir ]]; then
      [[ -d $mdir ]] || { summary+=("$k: FAILED: modules directory $mdir not found"); failed=1; continue; }
      rel=$(basename "$mdir")
      mroot=$kw/mroot
      mkdir -p "$mroot/lib/modules"
      ln -s "$(cd "$mdir" && pwd)" "$mroot/lib/modules/$rel"
    fi
    label="$k${rel:+ ($rel)}"
  else
    if [[ $k == linux-image-* ]]; then
      pkg=$k
    else
      [[ $k =~ ^[0-9]+\.[0-9]+$ ]] || { summary+=("$k: FAILED: not a kernel series (like 6.1), package or file"); failed=1; continue; }
      pkg=$(debian_package "$k")
      if [[ -z $pkg && $(id -u) -eq 0 ]]; then
        apt-get update -qq >/dev/null 2>&1 || true
        pkg=$(debian_package "$k")
      fi
      if [[ -z $pkg ]]; then
        # Offline: the newest cached package of that series.
        pkg=$(find "$cache" -maxdepth 1 -name "linux-image-${k}[.-]*-$arch_flavour-unsigned_*" -printf '%f\n' 2>/dev/null |
          sed 's/_.*//' | sort -V | tail -n1)
      fi
      [[ -n $pkg ]] || { summary+=("$k: FAILED: no Debian package linux-image-$k.*-$arch_flavour-unsigned found"); failed=1; continue; }
    fi
    if ! kdir=$(fetch_debian "$pkg" 2> >(tee "$kw/fetch.err" >&2)); then
      # Offline but cached: use the cached copy of that package.
      kdir=$(find "$cache" -maxdepth 1 -name "${pkg}_*" | sort -V | tail -n1)
      if [[ -z $kdir || ! -f $kdir/vmlinuz ]]; then
        summary+=("$k: FAILED: $(tail -n1 "$kw/fetch.err")"); failed=1; continue
      fi
    fi
    vmlinuz=$kdir/vmlinuz
    rel=$(cat "$kdir/release")
    mroot=$kdir/root
    pkg_ver=$(cat "$kdir/package")
    label="$k ($pkg_ver)"
  fi
  acc=$use_accel why=$accel_why
  note "booting $label under $acc (timeout $timeout_s s)"
  t0=$SECONDS
  fail_msg='' run_out=''
  if ! boot_one "$label" "$vmlinuz" "$rel" "$mroot" "$kw" "$acc"; then
    # A KVM that cannot run this kernel: once more under emulation, when the choice was ours.
    if [[ -n $kvm_broken ]]; then
      note "$label: $fail_msg; booting it again under software emulation"
      acc=tcg why="software emulation: KVM could not run this kernel"
      fail_msg='' run_out=''
      boot_one "$label" "$vmlinuz" "$rel" "$mroot" "$kw" "$acc" || true
    fi
  fi
  secs=$((SECONDS - t0))
  dir=$run_out
  if [[ -n $fail_msg || -z $dir ]]; then
    failed=1
    summary+=("$label [$acc]: FAILED after $secs s: ${fail_msg:-no results}")
    note "$label: FAILED: ${fail_msg:-no results}"
    continue
  fi
  write_matrix_json "$dir" "$k" "$pkg_ver" "$acc" "$why" "$secs"
  bad=$(awk '$2 != 0 && $2 != 77 {print $1 " (exit " $2 ")"}' "$dir/matrix-guest.txt" | paste -sd, -)
  if [[ -n $bad ]]; then
    failed=1
    summary+=("$label [$acc]: ran in $secs s, failed: $bad -> $dir")
  else
    summary+=("$label [$acc]: ok in $secs s -> $dir")
  fi
  # The guest's probe, in one line.
  if [[ -s $dir/probe.json ]]; then
    python3 - "$dir/probe.json" <<'EOF' 2>/dev/null | sed 's/^/    /' >&2 || true
import json, sys
p = json.load(open(sys.argv[1]))
u = p.get("io_uring") or {}
ops = u.get("opcodes") or []
print(f"kernel {p['kernel']['release']}: {len(ops)} io_uring opcodes, "
      f"SEND_ZC {'yes' if 'SEND_ZC' in ops else 'no'}, "
      f"setup flags {len(u.get('setup_flags') or [])}, features {len(u.get('features') or [])}")
EOF
  fi
  runs+=("$dir")
done

echo
echo "kernel matrix:"
printf '  %s\n' "${summary[@]}"

if ((do_compare)) && ((${#runs[@]} >= 2)); then
  out=$results/matrix-$(date -u +%Y%m%dT%H%M%SZ).md
  echo
  "$bin_dir/zclab" compare "${runs[@]}" --out "$out" || failed=1
  echo "compare written to $out"
elif ((do_compare)); then
  note "compare needs two runs that came back; got ${#runs[@]}"
  failed=1
fi
exit "$failed"
