# The two commands a newcomer needs:
#   make bench   install what is missing, build Release, run the 2-rank all-reduce sweep
#   make test    install what is missing, build, run the whole suite (ctest)
BUILD ?= build
JOBS ?= $(shell nproc)
BENCH_ARGS ?= -b 8 -e 256M -f 2

.PHONY: all deps configure build test test-gpu bench install format clean fuzz test-asan test-ubsan test-tsan

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

# The tests that make ranks fail leave flight-recorder dumps in TMPDIR (a few hundred small files
# a run): they go to a folder of the build, emptied each run, instead of piling up in /tmp.
test: build
	rm -rf $(BUILD)/test-tmp && mkdir -p $(BUILD)/test-tmp
	cd $(BUILD) && TMPDIR=$(abspath $(BUILD))/test-tmp ctest --output-on-failure --no-tests=error

# Then, where the anchors are (../shared/anchors, or ANCHORS=dir), Lockstep against OpenMPI in
# BENCH_RUNS interleaved runs, with ratios and the issue-5 targets (perf/compare; --suite for all).
ANCHORS ?= ../shared/anchors
BENCH_RUNS ?= 3
bench: build
	$(BUILD)/lockstep-run -n 2 $(BUILD)/perf/allreduce_perf $(BENCH_ARGS)
	@if [ -x "$(ANCHORS)/anchor.sh" ]; then \
	  LOCKSTEP_ANCHORS="$(ANCHORS)" perf/compare --build $(BUILD) --runs $(BENCH_RUNS); rc=$$?; \
	  if [ $$rc -eq 1 ]; then echo "make bench: some targets were missed (see the table above)"; \
	  elif [ $$rc -ne 0 ]; then echo "make bench: the comparison failed (exit $$rc: see above)"; exit $$rc; fi; \
	else \
	  echo "make bench: no anchors at $(ANCHORS) (set ANCHORS=dir): Lockstep alone above"; \
	fi

# libFuzzer targets (clang, ASan+UBSan) for FUZZ_SECONDS each; a 5 s smoke is part of `make test`.
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The suite under AddressSanitizer (+ leak checks), UndefinedBehaviorSanitizer, ThreadSanitizer.
test-asan: deps
	scripts/sanitize.sh asan
test-ubsan: deps
	scripts/sanitize.sh ubsan
test-tsan: deps
	scripts/sanitize.sh tsan

# The CUDA tests (tests/gpu), on a machine with a GPU; elsewhere they skip and say so.
test-gpu: build
	@grep -q "LOCKSTEP_HAVE_CUDA:INTERNAL=ON" $(BUILD)/CMakeCache.txt || \
	  { echo "make test-gpu: this build has no CUDA (nvcc not found, or -DLOCKSTEP_WITH_CUDA=OFF)"; exit 1; }
	cd $(BUILD) && ctest -L gpu --output-on-failure --no-tests=error

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

format:
	@git ls-files '*.cc' '*.c' '*.h' '*.hpp' '*.cu' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
