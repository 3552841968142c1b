#!/usr/bin/env bash
# One-step set-up for a fresh Debian/Ubuntu machine, then the main job or the tests.
#   bash packaging/bootstrap.sh demo   # set up, make the synthetic demo studies, analyse, open the viewer
#   bash packaging/bootstrap.sh test   # set up, run the whole test suite
# Installs missing system packages (when root or sudo is available), creates .venv, installs
# RadSight with the CPU build of torch (packaging/constraints.txt) and the plugins in plugins/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
MODE=${1:-demo}
shift || true

say() { printf '\033[1m[radsight setup]\033[0m %s\n' "$*" >&2; }

# Debian packages: Qt's xcb plugin and VTK's EGL/GLX (see shared/ENVIRONMENT.md), a virtual screen
# for the viewer and its tests, and the DICOM validators the tests run (dciodvfy, dcmsign)
# and poppler's PDF tools (pdfsig checks signed report PDFs, pdftoppm renders them).
APT_PACKAGES="python3-venv xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 \
libegl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0 libgl1 libopengl0 libfontconfig1 libdbus-1-3 \
dicom3tools dcmtk poppler-utils"

install_system_packages() {
    command -v dpkg >/dev/null 2>&1 || { say "not a Debian/Ubuntu system: install the equivalents of: $APT_PACKAGES"; return 0; }
    local missing=()
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
            say "missing system packages (need root to install): ${missing[*]}"; return 0; fi
    fi
    say "installing system packages: ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && \
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    say "Python 3.11 is required (apt-get install python3.11 python3.11-venv)"; exit 1
}

setup_venv() {
    local py stamp want
    py=$(find_python)
    # Plugins that ship with RadSight (plugins/*/pyproject.toml) are part of what is installed.
    want=$(cat pyproject.toml packaging/constraints.txt plugins/*/pyproject.toml | sha256sum | cut -d' ' -f1)
    stamp=.venv/.radsight-installed
    if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv with $($py --version)"
        "$py" -m venv .venv
    fi
    say "installing RadSight and its dependencies into .venv (first time: a few minutes, ~2.7 GB)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -c packaging/constraints.txt -e ".[test]"
    for plugin in plugins/*/; do
        say "installing the plugin in $plugin"
        .venv/bin/python -m pip install -q -c packaging/constraints.txt -e "$plugin"
    done
    echo "$want" > "$stamp"
}

# The Khronos glTF validator (npm registry), run by the GLB export test; optional for the viewer.
# Node and npm come from Debian only when there is no npm yet (a NodeSource node has its own).
install_gltf_validator() {
    [ "$(id -u)" -eq 0 ] || { command -v npm >/dev/null 2>&1 && [ -d "$(npm root -g)/gltf-validator" ] || \
        say "the Khronos glTF validator needs root to install (npm install -g gltf-validator): its test will be skipped"; return 0; }
    if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        say "installing node and npm for the glTF validator"
        env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 || \
            { env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
              env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1; } || true
    fi
    command -v npm >/dev/null 2>&1 || { say "no npm: the glTF validator test will be skipped"; return 0; }
    [ -d "$(npm root -g 2>/dev/null)/gltf-validator" ] && return 0
    say "installing the Khronos glTF validator (npm)"
    npm install -g --silent --no-fund --no-audit gltf-validator >/dev/null 2>&1 || \
        say "could not install gltf-validator from npm: the GLB validator test will be skipped"
}

install_system_packages
install_gltf_validator
setup_venv

case "$MODE" in
    demo)
        if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
            exec .venv/bin/radsight demo "$@"
        else
            say "no display: writing the demo outputs instead of opening the viewer"
            exec .venv/bin/radsight demo --no-gui "$@"
        fi
        ;;
    test)
        # A real (virtual) X screen: VTK inside Qt renders black on Qt's offscreen platform.
        if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
            exec xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python -m pytest "$@"
        fi
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        say "usage: bash packaging/bootstrap.sh demo|test [args...]"; exit 2 ;;
esac
