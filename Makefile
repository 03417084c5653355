# The two commands a newcomer needs:
#   make bench   install what is missing, build Release, run the 2-rank all-reduce sweep
#   make test    install what is missing, build, run the whole suite (ctest)
BUILD ?= build
JOBS ?= $(shell nproc)
BENCH_ARGS ?= -b 8 -e 256M -f 2

.PHONY: all deps configure build test bench install format clean

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

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

format:
	@git ls-files '*.cc' '*.c' '*.h' '*.hpp' '*.cu' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
