#!/usr/bin/env bash
# cibuildwheel's before-all on Linux and macOS (pyproject.toml,
# [tool.cibuildwheel]): builds the libcurl and cJSON a wheel bundles, from
# pinned, checksummed release tarballs, into PREFIX, and writes the
# pkg-config files setup.py finds them with.
#
#   manylinux (AlmaLinux) / musllinux (Alpine): shared libraries in /usr/local,
#       libcurl on the image's OpenSSL; auditwheel copies them into the wheel.
#   macOS: static universal2 (x86_64 + arm64) libraries in /tmp/uni1-deps,
#       libcurl on OpenSSL built here too (the core needs libcrypto anyway);
#       setup.py links them in (UNI1_PKG_CONFIG_STATIC=1), nothing to bundle.
#
# libcurl is built with no CA bundle or path of its own: a bundle path from
# the build machine would be wrong on the user's. The core probes the known
# paths at run time (csrc/core/cacerts.c).
#
# Not run on Windows: vcpkg installs curl[schannel] and cjson there.
set -euo pipefail

CURL_VERSION=8.11.1
CURL_SHA256=c7ca7db48b0909743eaef34250da02c19bc61d4f1dcedd6603f109409536ab56
CJSON_VERSION=1.7.18
CJSON_SHA256=3aa806844a03442c00769b83e99970be70fbef03735ff898f4811dd03b9f5ee5
OPENSSL_VERSION=3.0.15
OPENSSL_SHA256=23c666d0edf20f14249b3d8f0368acaee9ab585b09e1de82107c66e1f3ec9533

JOBS="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() { # url sha256 -> unpacked directory on stdout
    local url="$1" sum="$2" file
    file="$work/$(basename "$url")"
    curl -fsSL --retry 3 -o "$file" "$url"
    if command -v sha256sum >/dev/null; then
        echo "$sum  $file" | sha256sum -c --quiet -
    else
        echo "$sum  $file" | shasum -a 256 -c --quiet -
    fi
    mkdir -p "$file.d"
    tar -xf "$file" -C "$file.d" --strip-components=1
    echo "$file.d"
}

# cJSON is one C file: compiled here, no CMake needed in the image.
build_cjson() { # prefix kind(shared|static) cflags
    local prefix="$1" kind="$2" cflags="$3" src
    src="$(fetch "https://github.com/DaveGamble/cJSON/archive/refs/tags/v${CJSON_VERSION}.tar.gz" "$CJSON_SHA256")"
    mkdir -p "$prefix/include/cjson" "$prefix/lib/pkgconfig"
    cp "$src/cJSON.h" "$prefix/include/cjson/"
    # shellcheck disable=SC2086
    cc $cflags -O2 -fPIC -fvisibility=default -c "$src/cJSON.c" -o "$src/cJSON.o"
    if [ "$kind" = shared ]; then
        cc -shared -Wl,-soname,libcjson.so.1 -o "$prefix/lib/libcjson.so.1" "$src/cJSON.o"
        ln -sf libcjson.so.1 "$prefix/lib/libcjson.so"
    else
        ar rcs "$prefix/lib/libcjson.a" "$src/cJSON.o"
    fi
    cat >"$prefix/lib/pkgconfig/libcjson.pc" <<EOF
prefix=$prefix
Name: libcjson
Description: cJSON (built for the scenario_uni1 wheel)
Version: $CJSON_VERSION
Libs: -L\${prefix}/lib -lcjson
Cflags: -I\${prefix}/include -I\${prefix}/include/cjson
EOF
}

CURL_FEATURES="--disable-manual --disable-ldap --disable-ldaps --disable-rtsp --disable-dict \
    --disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smtp --disable-gopher \
    --disable-mqtt --without-libpsl --without-libidn2 --without-brotli --without-zstd \
    --without-nghttp2 --without-librtmp --without-libssh2 --without-ca-bundle --without-ca-path \
    --with-zlib"

linux() {
    local prefix=/usr/local
    if command -v apk >/dev/null; then
        # musl has ucontext_t but not makecontext/swapcontext (fiber.c):
        # libucontext provides them (pyproject.toml links it on musllinux).
        apk add --no-cache openssl-dev zlib-dev xz tar libucontext-dev
    else
        yum install -y openssl-devel zlib-devel xz
    fi
    build_cjson "$prefix" shared ""
    local src
    src="$(fetch "https://curl.se/download/curl-${CURL_VERSION}.tar.xz" "$CURL_SHA256")"
    (
        cd "$src"
        # shellcheck disable=SC2086
        ./configure -q --prefix="$prefix" --enable-shared --disable-static --with-openssl $CURL_FEATURES
        make -s -j"$JOBS" && make -s install
    )
    ldconfig 2>/dev/null || true
}

macos() {
    local prefix=/tmp/uni1-deps arch src
    rm -rf "$prefix"
    mkdir -p "$prefix/lib/pkgconfig"
    export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-10.13}"
    # One build per architecture, joined with lipo: configure scripts test
    # one target at a time. OpenSSL's headers are the same on both (LP64).
    for arch in x86_64 arm64; do
        src="$(fetch "https://github.com/openssl/openssl/releases/download/openssl-${OPENSSL_VERSION}/openssl-${OPENSSL_VERSION}.tar.gz" "$OPENSSL_SHA256")"
        (
            cd "$src"
            ./Configure "darwin64-$arch-cc" no-shared no-tests no-apps --prefix="$prefix/$arch" >/dev/null
            make -s -j"$JOBS" build_libs && make -s install_dev
        )
        src="$(fetch "https://curl.se/download/curl-${CURL_VERSION}.tar.xz" "$CURL_SHA256")"
        (
            cd "$src"
            host=$([ "$arch" = arm64 ] && echo aarch64-apple-darwin || echo x86_64-apple-darwin)
            # shellcheck disable=SC2086
            CFLAGS="-arch $arch" ./configure -q --host="$host" --prefix="$prefix/$arch" \
                --disable-shared --enable-static --with-openssl="$prefix/$arch" $CURL_FEATURES
            make -s -j"$JOBS" && make -s install
        )
    done
    for lib in libcrypto.a libssl.a libcurl.a; do
        lipo -create "$prefix/x86_64/lib/$lib" "$prefix/arm64/lib/$lib" -output "$prefix/lib/$lib"
    done
    cp -R "$prefix/arm64/include" "$prefix/include"
    build_cjson "$prefix" static "-arch x86_64 -arch arm64"
    cat >"$prefix/lib/pkgconfig/libcrypto.pc" <<EOF
prefix=$prefix
Name: libcrypto
Description: OpenSSL libcrypto (static, universal2)
Version: $OPENSSL_VERSION
Libs: -L\${prefix}/lib -lcrypto
Cflags: -I\${prefix}/include
EOF
    cat >"$prefix/lib/pkgconfig/libcurl.pc" <<EOF
prefix=$prefix
Name: libcurl
Description: libcurl (static, universal2, OpenSSL)
Version: $CURL_VERSION
Libs: -L\${prefix}/lib -lcurl
Libs.private: -lssl -lcrypto -lz -framework CoreFoundation -framework SystemConfiguration -framework Security
Cflags: -I\${prefix}/include -DCURL_STATICLIB
EOF
}

case "$(uname -s)" in
    Linux) linux ;;
    Darwin) macos ;;
    *) echo "wheel_deps.sh: unsupported system $(uname -s) (Windows uses vcpkg)" >&2; exit 2 ;;
esac
