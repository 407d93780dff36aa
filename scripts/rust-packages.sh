# Sourced by setup.sh and provision.sh: which of the distribution's packages give a Rust
# toolchain new enough for the crate (1.85: edition 2024), through apt's configured sources.
#
#   rust_packages   prints "rustc cargo" where the distribution's rustc is new enough (Debian 13,
#                   Ubuntu 25.04), else "rustc-web cargo-web" (Debian 12, whose security updates
#                   keep that toolchain new), else "rustup" where it packages rustup (Ubuntu
#                   24.04: the toolchain then comes from rustup's configured server), else nothing.

apt_candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}'; }

# Whether package $1's candidate's upstream version is 1.85 or newer.
apt_rust_new_enough() {
  local v
  v=$(apt_candidate "$1" | sed -E 's/^[0-9]+://; s/[+~-].*//')
  [[ -n $v ]] && printf '1.85.0\n%s\n' "$v" | sort -V -C
}

rust_packages() {
  if apt_rust_new_enough rustc; then
    echo "rustc cargo"
  elif apt_rust_new_enough rustc-web; then
    echo "rustc-web cargo-web"
  elif [[ -n $(apt_candidate rustup) ]]; then
    echo "rustup"
  fi
}
