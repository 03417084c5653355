#!/usr/bin/env bash
# mpirun launches Lockstep programs two ways (Debian's OpenMPI; skipped when there is no mpirun):
#  1. mpi_check inits through MPI (lockstep/mpi.h: MPI_Bcast of the unique id, nothing else), and
#     with a NULL comm on rank 0, which every rank must refuse at once;
#  2. mp_check inits from the environment: rank and size from OpenMPI's OMPI_COMM_WORLD_*
#     variables, the rendezvous from LOCKSTEP_ROOT, and checks every collective.
# usage: mpirun_test.sh MPIRUN MPI_CHECK MP_CHECK
set -uo pipefail
mpirun=${1:-mpirun}
mpi_check=$2
mp_check=$3
if ! command -v "$mpirun" >/dev/null 2>&1; then
  echo "SKIPPED: no mpirun (apt-get install openmpi-bin libopenmpi-dev, or scripts/install-deps.sh)"
  exit 77
fi
# As root OpenMPI refuses to start without these; 4 ranks on fewer cores need --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1
args=(-np 4 --oversubscribe)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== mpirun -np 4 mpi_check (init through MPI_Bcast of the id)"
timeout 120 "$mpirun" "${args[@]}" -x LOCKSTEP_DEBUG=INFO -x LOCKSTEP_TIMEOUT=60 "$mpi_check" >"$out" 2>&1
rc=$?
cat "$out"
[ $rc -eq 0 ] || { echo "FAILED: mpi_check exited $rc"; exit 1; }
grep -q "4 ranks initialised through MPI_Bcast of the id, 0 wrong" "$out" || { echo "FAILED: no result line"; exit 1; }

echo "== mpirun -np 4 mpi_check --null-comm-on-rank-0 (every rank refused at once, none left in MPI_Bcast)"
timeout 60 "$mpirun" "${args[@]}" -x LOCKSTEP_TIMEOUT=60 "$mpi_check" --null-comm-on-rank-0 >"$out" 2>&1
rc=$?
cat "$out"
[ $rc -eq 0 ] || { echo "FAILED: mpi_check --null-comm-on-rank-0 exited $rc (124: a rank was left waiting)"; exit 1; }
grep -q "comm == NULL on rank 0: 4 of 4 ranks refused at once" "$out" || { echo "FAILED: no result line"; exit 1; }

echo "== mpirun -np 4 mp_check (rank and size from OMPI_COMM_WORLD_*, LOCKSTEP_ROOT)"
port=0
for _ in $(seq 20); do
  p=$((20000 + RANDOM % 20000))
  if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then port=$p; break; fi
done
timeout 120 "$mpirun" "${args[@]}" -x LOCKSTEP_ROOT=127.0.0.1:$port -x LOCKSTEP_DEBUG=INFO -x LOCKSTEP_TIMEOUT=60 \
  "$mp_check" --types float32,int32,bfloat16 --ops sum,max --counts 0,1,N-1,100003 --block-counts 0,1,N-1,1001 \
  >"$out" 2>&1
rc=$?
grep -v " INFO tuner" "$out" | tail -n 40
[ $rc -eq 0 ] || { echo "FAILED: mp_check exited $rc"; exit 1; }
grep -q "on 4 ranks, 0 wrong" "$out" || { echo "FAILED: no result line"; exit 1; }
grep -q "from openmpi variables" "$out" || { echo "FAILED: the OpenMPI variables were not what gave the rank"; exit 1; }
echo "mpirun: OK"
