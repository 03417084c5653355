# The two commands a newcomer needs:
#   make bench   install what is missing, build Release, run the 2-rank all-reduce sweep
#   make test    install what is missing, build, run the whole suite (ctest)
BUILD ?= build
JOBS ?= $(shell nproc)
BENCH_ARGS ?= -b 8 -e 256M -f 2

.PHONY: all deps configure build test bench install format clean fuzz test-asan test-ubsan test-tsan

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure --no-tests=error

bench: build
	$(BUILD)/lockstep-run -n 2 $(BUILD)/perf/allreduce_perf $(BENCH_ARGS)

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

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

format:
	@git ls-files '*.cc' '*.c' '*.h' '*.hpp' '*.cu' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
