# CUDA (optional): on when nvcc is found, off with -DLOCKSTEP_WITH_CUDA=OFF. Everything CUDA lives
# in liblockstep_cuda, never in liblockstep itself, so the host library loads and works on
# machines with no GPU, no driver and no CUDA runtime.
option(LOCKSTEP_WITH_CUDA "Build the CUDA kernels when nvcc is found" ON)
set(LOCKSTEP_HAVE_CUDA OFF CACHE INTERNAL "CUDA kernels are built")
if(LOCKSTEP_WITH_CUDA)
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)  # the toolkit's usual home, often not on PATH
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # sm_80 (A100) and sm_90 (H100) machine code, plus PTX for newer GPUs to JIT.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80-real 90-real 90-virtual)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(LOCKSTEP_HAVE_CUDA ON CACHE INTERNAL "CUDA kernels are built")
  else()
    message(STATUS "nvcc not found: building without CUDA (host memory only)")
  endif()
endif()

if(LOCKSTEP_HAVE_CUDA)
  message(STATUS "CUDA ${CMAKE_CUDA_COMPILER_VERSION}: building liblockstep_cuda for ${CMAKE_CUDA_ARCHITECTURES}")
  set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no C++20 flag for nvcc; the kernels need only 17
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  add_library(lockstep_cuda SHARED kernels/cuda_kernels.cu transport/cuda_ipc/ipc_kernel.cu)
  target_include_directories(lockstep_cuda PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}>
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>)
  # No contraction: avg's a + b * (1/n) must round as the CPU's separate multiply and add do.
  target_compile_options(lockstep_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false>)
  target_link_libraries(lockstep_cuda PUBLIC CUDA::cudart)
  # Versioned as liblockstep is: the host library loads the one of its own version by name
  # (cuda_ipc.cc), as the data types and the program header it hands over are that version's.
  set_target_properties(lockstep_cuda PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${LOCKSTEP_SOVERSION})
  install(TARGETS lockstep_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
