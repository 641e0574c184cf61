# ftvmm build: one binary, a static library of everything but main, unit tests under ASan+UBSan.
CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -MMD -MP
LDLIBS  := -luring -lfdt -lgnutls -lcurl -ljson-c -llz4 -lzstd -pthread
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

B := build
SRCS := $(filter-out cmd/main.c,$(wildcard vmm/*.c devices/*.c ft/*.c cmd/*.c))
OBJS := $(SRCS:%.c=$(B)/obj/%.o)
SOBJS := $(SRCS:%.c=$(B)/san/%.o)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_SAN := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit-san/%)
UNIT_PLAIN := $(UNIT_SRCS:tests/unit/%.c=$(B)/unit/%)

.PHONY: all clean test test-unit test-valgrind test-integration bench-boot demo fuzz lint layers
all: layers $(B)/ftvmm

# Layers point one way, vmm/ <- devices/ <- ft/ <- cmd/: a lower one including a higher one fails the build.
layers:
	@bash tests/layers.sh

$(B)/ftvmm: $(B)/obj/cmd/main.o $(B)/libftvmm.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/libftvmm.a: $(OBJS)
	rm -f $@ && ar rcs $@ $^

$(B)/libftvmm-san.a: $(SOBJS)
	rm -f $@ && ar rcs $@ $^

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -c -o $@ $<

$(B)/unit-san/%: tests/unit/%.c $(B)/libftvmm-san.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -o $@ $< $(B)/libftvmm-san.a $(LDLIBS)

$(B)/unit/%: tests/unit/%.c $(B)/libftvmm.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libftvmm.a $(LDLIBS)

# Unit tests: no KVM needed. Each binary exits non-zero on the first failed check. One make target per test, so
# `make -jN` runs N at once (most of their time is waiting: real etcd, sockets, timeouts); each test's output is
# kept in a .log beside it and printed whole when it ends (never interleaved), all of it when it failed.
# (static pattern rules and .SECONDARY: the test binaries are kept, never deleted as intermediate files)
UNIT_RUN := $(UNIT_SAN:$(B)/unit-san/%=unit-run-%)
VG_RUN := $(UNIT_PLAIN:$(B)/unit/%=valgrind-run-%)
.PHONY: $(UNIT_RUN) $(VG_RUN) unit-native-outbuf
.SECONDARY: $(UNIT_SAN) $(UNIT_PLAIN)
test-unit: $(UNIT_RUN) unit-native-outbuf
test-valgrind: $(VG_RUN)

# A test that hangs is stopped and fails with its log (exit 124) rather than holding the run until CI's own limit.
UNIT_TIMEOUT ?= 300
VG_TIMEOUT ?= 600
$(UNIT_RUN): unit-run-%: $(B)/unit-san/% $(B)/ftvmm
	@if ASAN_OPTIONS=detect_leaks=1 timeout -k 10 $(UNIT_TIMEOUT) $< >$<.log 2>&1; then echo "== $* passed"; tail -n 3 $<.log; \
	  else rc=$$?; cat $<.log; echo "== $* FAILED (exit $$rc$$([ $$rc = 124 ] && echo ': hung, stopped after $(UNIT_TIMEOUT) s'))"; exit 1; fi

# Under valgrind the tests against a real etcd (test_arbiter, test_fence) run their parsing parts only: their etcd
# parts wait out real timeouts, which valgrind stretches to most of a minute, and they run whole under ASan above.
$(VG_RUN): valgrind-run-%: $(B)/unit/%
	@if FTVMM_TEST_NO_ETCD=1 timeout -k 10 $(VG_TIMEOUT) valgrind -q --error-exitcode=3 --leak-check=full \
	  --errors-for-leak-kinds=definite,indirect --log-file=$<.vg $< >$<.log 2>&1; then echo "== valgrind $* passed"; \
	  else rc=$$?; cat $<.log $<.vg; echo "== valgrind $* FAILED (exit $$rc$$([ $$rc = 124 ] && echo ': hung, stopped after $(VG_TIMEOUT) s'))"; exit 1; fi

# test_outbuf's check of what glibc hands out per held packet runs only under glibc's own malloc (ASan and
# valgrind report the size asked for): once more, natively.
unit-native-outbuf: $(B)/unit/test_outbuf
	@if $< >$<.native.log 2>&1; then echo "== test_outbuf (glibc malloc) passed"; \
	  else rc=$$?; cat $<.native.log; echo "== test_outbuf (glibc malloc) FAILED (exit $$rc)"; exit 1; fi

# Everything: unit, sanitizer, valgrind, fuzz smoke, then the KVM integration suite (direct or test bed).
test:
	bash tests/run-tests.sh

test-integration: all
	FTVMM=$(abspath $(B))/ftvmm bash tests/integration/run.sh

bench-boot: all
	bash tests/bench/boot.sh

demo:
	bash tests/demo.sh

# libFuzzer smoke run (tests/fuzz/run.sh): virtqueue, virtio-blk, virtio-net rings, virtio-pci/MSI-X
# accesses, the backup's data-link stream, the snapshot file reader and etcd's answers to the arbiter;
# FUZZ_SECS (default 45) is the whole run's fuzzing time, split evenly among the targets.
fuzz:
	bash tests/fuzz/run.sh $(or $(FUZZ_SECS),45)

lint:
	cppcheck -q --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
	  --suppress=missingIncludeSystem -D__x86_64__ vmm devices ft cmd

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
