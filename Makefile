# scenario_uni1: checks of the plain C core.
#
#   make ctest          cmocka tests of the core (tests/c)
#   make valgrind       the same tests under valgrind memcheck
#   make csan           the same tests built with ASan + UBSan
#   make fuzz           libFuzzer targets into tests/fuzz/build/;
#                       FUZZ_SECONDS=N also runs each one for N seconds
#   make fuzz-replay    replays every seed corpus through ASan + UBSan builds
#   make fuzz-valgrind  replays every seed corpus under valgrind
#   make mingw-check    the core cross-compiled for Windows, warnings as errors
#   make mingw-test     the Windows fibers and platform calls, run under wine
#   make clean
#
# Build output goes to tests/c/build and tests/fuzz/build only.
# Python-side targets (asan, test, bench) belong in the section at the end.

.DEFAULT_GOAL := ctest
.DELETE_ON_ERROR:

CC         ?= cc
CLANG      ?= clang
PKG_CONFIG ?= pkg-config
VALGRIND   ?= valgrind

# --- The core -------------------------------------------------------------

CORE_DIR     := csrc/core
CORE_PKGS    := libcurl libcjson libcrypto
CORE_PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(CORE_PKGS))
CORE_PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(CORE_PKGS))

# The pure core: no network, linked by every test and fuzz target.
CORE_PURE_SRCS := $(CORE_DIR)/status.c $(CORE_DIR)/json.c $(CORE_DIR)/parse.c $(CORE_DIR)/body.c $(CORE_DIR)/cdn.c
# The rest of the core (client.c, http.c, ops.c, ...): every other .c file.
CORE_NET_SRCS  := $(filter-out $(CORE_PURE_SRCS),$(sort $(wildcard $(CORE_DIR)/*.c)))

# WITH_NET=1 adds the tests of the network part (every tests/c/test_*.c not
# listed in CTEST_PURE_NAMES, linked with CORE_NET_SRCS too) to ctest,
# valgrind and csan; WITH_NET=0 leaves them out (e.g. while that part is
# being rewritten and does not build).
WITH_NET ?= 1

STD_FLAGS  := -std=c11 -D_GNU_SOURCE
WARN_FLAGS := -Wall -Wextra -Werror
SAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CORE_CFLAGS := $(STD_FLAGS) $(WARN_FLAGS) -I$(CORE_DIR) $(CORE_PKG_CFLAGS)

# Sanitizer run-time settings for every sanitized binary this file runs.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1 \
           UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# --- C tests (cmocka) -----------------------------------------------------

CTEST_DIR   := tests/c
CTEST_BUILD := $(CTEST_DIR)/build
CMOCKA_CFLAGS := $(shell $(PKG_CONFIG) --cflags cmocka)
CTEST_LIBS  := $(shell $(PKG_CONFIG) --libs libcurl libcjson libcrypto cmocka) -lm -lpthread

# One binary per tests/c/test_*.c. The tests of the pure core link only
# CORE_PURE_SRCS; any other test also links CORE_NET_SRCS.
CTEST_PURE_NAMES := test_status test_parse test_body test_oom test_cdn
CTEST_ALL_NAMES  := $(patsubst $(CTEST_DIR)/%.c,%,$(sort $(wildcard $(CTEST_DIR)/test_*.c)))
CTEST_NET_NAMES  := $(filter-out $(CTEST_PURE_NAMES),$(CTEST_ALL_NAMES))
CTEST_NAMES := $(filter $(CTEST_PURE_NAMES),$(CTEST_ALL_NAMES))
ifeq ($(WITH_NET),1)
CTEST_NAMES += $(CTEST_NET_NAMES)
endif
# test_oom replaces malloc/calloc/realloc of the core to fail on demand.
CTEST_LDFLAGS_test_oom := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

CTEST_CFLAGS_plain := -O1 -g
CTEST_CFLAGS_san   := -O1 -g $(SAN_FLAGS)

# $(1) = variant (plain, san). Objects and binaries go to build/<variant>/.
define ctest_variant
$(1)_PURE_OBJS := $$(patsubst $(CORE_DIR)/%.c,$(CTEST_BUILD)/$(1)/core/%.o,$$(CORE_PURE_SRCS))
$(1)_NET_OBJS := $$(patsubst $(CORE_DIR)/%.c,$(CTEST_BUILD)/$(1)/core/%.o,$$(CORE_NET_SRCS))
$(1)_BINS := $$(addprefix $(CTEST_BUILD)/$(1)/,$$(CTEST_NAMES))

$(CTEST_BUILD)/$(1)/core/%.o: $(CORE_DIR)/%.c
	@mkdir -p $$(@D)
	$$(CC) $$(CORE_CFLAGS) $$(CTEST_CFLAGS_$(1)) -MMD -MP -c $$< -o $$@

$(CTEST_BUILD)/$(1)/%.o: $(CTEST_DIR)/%.c
	@mkdir -p $$(@D)
	$$(CC) $$(CORE_CFLAGS) $$(CMOCKA_CFLAGS) $$(CTEST_CFLAGS_$(1)) -MMD -MP -c $$< -o $$@

$$(addprefix $(CTEST_BUILD)/$(1)/,$$(CTEST_PURE_NAMES)): $(CTEST_BUILD)/$(1)/%: \
		$(CTEST_BUILD)/$(1)/%.o $$($(1)_PURE_OBJS)
	$$(CC) $$(CTEST_CFLAGS_$(1)) $$^ -o $$@ $$(CTEST_LDFLAGS_$$*) $$(CTEST_LIBS)

$$(addprefix $(CTEST_BUILD)/$(1)/,$$(CTEST_NET_NAMES)): $(CTEST_BUILD)/$(1)/%: \
		$(CTEST_BUILD)/$(1)/%.o $$($(1)_PURE_OBJS) $$($(1)_NET_OBJS)
	$$(CC) $$(CTEST_CFLAGS_$(1)) $$^ -o $$@ $$(CTEST_LDFLAGS_$$*) $$(CTEST_LIBS)

-include $$(wildcard $(CTEST_BUILD)/$(1)/*.d $(CTEST_BUILD)/$(1)/core/*.d)
endef
$(eval $(call ctest_variant,plain))
$(eval $(call ctest_variant,san))

.PHONY: ctest ctest-build valgrind csan
ctest-build: $(plain_BINS)

ctest: $(plain_BINS)
	@set -e; for t in $^; do echo "== $$t"; ./$$t; done

valgrind: $(plain_BINS)
	@set -e; for t in $^; do echo "== valgrind $$t"; \
	  $(VALGRIND) --tool=memcheck --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite,indirect --track-origins=yes -q ./$$t; done

csan: $(san_BINS)
	@set -e; for t in $^; do echo "== sanitizers $$t"; $(SAN_ENV) ./$$t; done

# --- Fuzzing (libFuzzer) --------------------------------------------------

FUZZ_DIR    := tests/fuzz
FUZZ_BUILD  := $(FUZZ_DIR)/build
FUZZ_CORPUS := $(FUZZ_DIR)/corpus
# One tests/fuzz/fuzz_<target>.c per target; its seeds in corpus/<target>/.
FUZZ_TARGETS := $(patsubst $(FUZZ_DIR)/fuzz_%.c,%,$(wildcard $(FUZZ_DIR)/fuzz_*.c))
FUZZ_SECONDS ?= 0
FUZZ_FLAGS  := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -dict=$(FUZZ_DIR)/uni1.dict
FUZZ_CFLAGS := $(STD_FLAGS) $(WARN_FLAGS) -I$(CORE_DIR) -I$(FUZZ_DIR) $(CORE_PKG_CFLAGS) -O1 -g
FUZZ_LIBS   := $(CORE_PKG_LIBS) -lm

FUZZ_BINS   := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))
REPLAY_BINS := $(addprefix $(FUZZ_BUILD)/replay_,$(FUZZ_TARGETS))
REPLAY_PLAIN_BINS := $(addprefix $(FUZZ_BUILD)/replay-plain_,$(FUZZ_TARGETS))
FUZZ_DEPS   := $(CORE_PURE_SRCS) $(CORE_DIR)/upload.c $(wildcard $(CORE_DIR)/*.h $(FUZZ_DIR)/*.h)

# libFuzzer binaries (clang).
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -fno-omit-frame-pointer $< $(CORE_PURE_SRCS) -o $@ $(FUZZ_LIBS)

# Replay drivers: a plain main() over corpus files, no libFuzzer, so any C
# compiler works; one with ASan + UBSan, one bare for valgrind.
$(FUZZ_BUILD)/replay_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_DIR)/replay.c $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(CC) $(FUZZ_CFLAGS) $(SAN_FLAGS) $< $(FUZZ_DIR)/replay.c $(CORE_PURE_SRCS) -o $@ $(FUZZ_LIBS)

$(FUZZ_BUILD)/replay-plain_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_DIR)/replay.c $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(CC) $(FUZZ_CFLAGS) $< $(FUZZ_DIR)/replay.c $(CORE_PURE_SRCS) -o $@ $(FUZZ_LIBS)

.PHONY: fuzz fuzz-build fuzz-replay fuzz-valgrind fuzz-merge
fuzz-build: $(FUZZ_BINS)

# New inputs go to tests/fuzz/build/corpus/<target> (the first directory
# given to libFuzzer); the checked-in seeds are only read. Crashes land in
# tests/fuzz/build/artifacts/.
fuzz: $(FUZZ_BINS)
	@set -e; if [ "$(FUZZ_SECONDS)" -gt 0 ]; then \
	  for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	    $(FUZZ_BUILD)/fuzz_$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	      -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
	      $(FUZZ_BUILD)/corpus/$$t $(FUZZ_CORPUS)/$$t; \
	  done; \
	fi

fuzz-replay: $(REPLAY_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== replay $$t"; $(SAN_ENV) $(FUZZ_BUILD)/replay_$$t $(FUZZ_CORPUS)/$$t; done

fuzz-valgrind: $(REPLAY_PLAIN_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== valgrind replay $$t"; \
	  $(VALGRIND) --tool=memcheck --error-exitcode=1 --leak-check=full \
	    --errors-for-leak-kinds=definite,indirect -q \
	    $(FUZZ_BUILD)/replay-plain_$$t $(FUZZ_CORPUS)/$$t; done

# A minimal union of the seeds and what fuzzing found, written to
# tests/fuzz/build/merged/<target>: review it, then copy it over
# tests/fuzz/corpus/<target> (keep each seed corpus under ~200 files).
fuzz-merge: $(FUZZ_BINS)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/merged/$$t; \
	  $(FUZZ_BUILD)/fuzz_$$t -merge=1 $(FUZZ_BUILD)/merged/$$t \
	    $(FUZZ_CORPUS)/$$t $(FUZZ_BUILD)/corpus/$$t; \
	done

# --- Windows: the core cross-compiled with MinGW-w64 ---------------------
#
#   make mingw-check   compiles every csrc/core/*.c for Windows (x86_64-w64-
#                      mingw32-gcc, -c only) with warnings as errors
#   make mingw-test    links tests/c/win_platform.c with the Windows halves
#                      of the fibers and platform.h (no libcurl needed) and
#                      runs it under wine
#
# Debian ships no MinGW builds of libcurl, cJSON or OpenSSL: their public
# headers are taken from the host, one symlink per header directory, so the
# cross compiler never sees the host's glibc headers beside them.

MINGW_CC    ?= x86_64-w64-mingw32-gcc
WINE        ?= /usr/lib/wine/wine64
WINESERVER  ?= /usr/lib/wine/wineserver64
HOST_INCLUDE ?= /usr/include
HOST_MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
MINGW_BUILD := $(CTEST_BUILD)/mingw
MINGW_INC   := $(MINGW_BUILD)/include
MINGW_CFLAGS := -std=c11 -D__USE_MINGW_ANSI_STDIO=1 $(WARN_FLAGS) -I$(CORE_DIR) -I$(MINGW_INC)
MINGW_OBJS  := $(patsubst $(CORE_DIR)/%.c,$(MINGW_BUILD)/%.o,$(sort $(wildcard $(CORE_DIR)/*.c)))

# The first of HOST_INCLUDE/<multiarch>/D and HOST_INCLUDE/D for curl and
# cjson; openssl's headers are split between the two (opensslconf.h).
$(MINGW_INC)/.stamp:
	@rm -rf $(MINGW_INC) && mkdir -p $(MINGW_INC)/openssl
	@set -e; for d in curl cjson; do \
	  for base in $(HOST_INCLUDE)/$(HOST_MULTIARCH) $(HOST_INCLUDE); do \
	    if [ -d $$base/$$d ]; then ln -s $$base/$$d $(MINGW_INC)/$$d; break; fi; done; \
	  [ -e $(MINGW_INC)/$$d ] || { echo "no $$d headers under $(HOST_INCLUDE)" >&2; exit 1; }; \
	done
	@set -e; for f in $(HOST_INCLUDE)/openssl/*.h $(wildcard $(HOST_INCLUDE)/$(HOST_MULTIARCH)/openssl/*.h); do \
	  ln -sf $$f $(MINGW_INC)/openssl/; done
	@touch $@

$(MINGW_BUILD)/%.o: $(CORE_DIR)/%.c $(MINGW_INC)/.stamp
	$(MINGW_CC) $(MINGW_CFLAGS) -MMD -MP -c $< -o $@

-include $(wildcard $(MINGW_BUILD)/*.d)

MINGW_TEST_SRCS := $(CTEST_DIR)/win_platform.c $(CORE_DIR)/fiber_win.c $(CORE_DIR)/platform_win.c
$(MINGW_BUILD)/win_platform.exe: $(MINGW_TEST_SRCS) $(wildcard $(CORE_DIR)/*.h) $(MINGW_INC)/.stamp
	$(MINGW_CC) $(MINGW_CFLAGS) -O1 -g $(MINGW_TEST_SRCS) -o $@ -static -lws2_32 -lpthread

.PHONY: mingw-check mingw-test
mingw-check: $(MINGW_OBJS)
	@echo "mingw-check: $(words $(MINGW_OBJS)) files of $(CORE_DIR) compiled for Windows, no warnings"

# The wine prefix lives outside the source tree and goes away after the run:
# it holds dosdevices/z: -> /, and setuptools walks the tree following links
# (pip wheel . and the sdist would then walk the whole filesystem).
mingw-test: $(MINGW_BUILD)/win_platform.exe
	@rm -rf $(MINGW_BUILD)/wineprefix
	@prefix="$$(mktemp -d)"; rc=0; \
	WINEDEBUG=-all WINEPREFIX="$$prefix" $(WINE) $< $(abspath $(MINGW_BUILD))/out || rc=$$?; \
	WINEPREFIX="$$prefix" $(WINESERVER) -w; rm -rf "$$prefix"; exit $$rc

# --- Style ----------------------------------------------------------------
# One formatter per language: clang-format (.clang-format) for C, ruff
# (pyproject.toml) for Python. CI fails on any difference.

C_SOURCES := $(wildcard csrc/*/*.c csrc/*/*.h tests/c/*.c tests/c/*.h tests/fuzz/*.c tests/fuzz/*.h)
RUFF      ?= ruff

.PHONY: format format-check
format:
	clang-format -i $(C_SOURCES)
	$(RUFF) format scenario_uni1 tests bench examples docs
	$(RUFF) check --fix scenario_uni1 tests bench examples docs

format-check:
	clang-format --dry-run --Werror $(C_SOURCES)
	$(RUFF) format --check scenario_uni1 tests bench examples docs
	$(RUFF) check scenario_uni1 tests bench examples docs

# --- Housekeeping ---------------------------------------------------------

.PHONY: clean
clean:
	rm -rf $(CTEST_BUILD) $(FUZZ_BUILD)

# --- Python side (extension build, pytest) --------------------------------
#
#   make asan     the pytest suite (less ASAN_SKIP) against a copy of the package whose
#                 extension is built with ASan + UBSan (-fno-sanitize-recover:
#                 any report fails the run). It runs from build/asan so that
#                 copy, not the in-place build, is imported, also by the
#                 child processes the tests start.

PYTHON     ?= python3
ASAN_BUILD := build/asan
# CPython itself is not leak-clean at exit, so LeakSanitizer stays off here;
# the C tests (csan, valgrind) check the core for leaks.
PY_SAN_ENV := ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1:strict_string_checks=1 \
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

ASAN_RUN = $(PY_SAN_ENV) LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)"

# Left out of the sanitized run, to keep CI under its time budget: files
# whose code under test is Python alone (the emulator, the setup hint, the
# typing checks, the bench harness) or whose C paths the files kept already
# drive (the CLI and batch command as subprocesses, the notebook's kernel,
# the CA layouts, the wall-clock poll schedule and the RSS leak test, whose
# figures mean nothing under ASan). They all run in the plain pytest layer.
ASAN_SKIP ?= test_emulator.py test_emulator_chaos.py test_setup_hint.py test_typing.py \
             test_bench.py test_cli.py test_batch.py test_notebook.py test_ca_probe.py \
             test_poll_schedule.py test_leaks.py

.PHONY: asan
asan:
	rm -rf $(ASAN_BUILD)
	mkdir -p $(ASAN_BUILD)
	UNI1_SANITIZE=1 UNI1_WERROR=1 $(PYTHON) setup.py -q build_ext \
	  --build-lib $(ASAN_BUILD) --build-temp $(ASAN_BUILD)/tmp
	# The Python sources beside the sanitized extension (every subpackage,
	# the stubs), the tests, and what the tests read (README.md, bench/).
	tar -cf - --exclude=__pycache__ --exclude='*.so' --exclude=tests/c --exclude=tests/fuzz \
	  scenario_uni1 tests bench README.md | tar -C $(ASAN_BUILD) -xf -
	cd $(ASAN_BUILD) && $(ASAN_RUN) $(PYTHON) -c "import os, scenario_uni1._core as c; \
	  assert os.path.realpath(c.__file__).startswith(os.getcwd()), c.__file__; \
	  print('sanitized build:', c.__file__)"
	cd $(ASAN_BUILD) && $(ASAN_RUN) $(PYTHON) -m pytest -q -p no:cacheprovider -m "not cluster" \
	  $(addprefix --ignore=tests/,$(ASAN_SKIP)) tests

# make bench: every figure of shared/benchmarks.md against scenario-sdk (the
# `bench` extra), written to bench/RESULTS.md (~35 min on 2 cores, P9's 10,000 jobs of
# 60 s the longest; BENCH_ARGS=--quick for ~5 min; BENCH_ARGS="--only P3,P9 --update"
# re-runs some rows and keeps the others). perf, when installed, profiles P2 into
# bench/profile_p2.txt. Needs the extension built in place.
.PHONY: bench
bench:
	$(PYTHON) -m bench $(BENCH_ARGS)
