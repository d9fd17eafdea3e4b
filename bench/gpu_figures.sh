#!/bin/bash
# The GPU figures the open issues ask for (issue 14 goal 6, 17 goal 6, 19 goal 5), side by side on one GPU node in one
# call of about 9 minutes: the 500^3 tortuosity benchmark, the 64^3 Berea SliceGAN (default preset), the calorimeter
# gpu preset on CaloGAN (100k showers) and dataset 2 (30k), and the N-body gpu preset at 128^2. Every simulation runs in
# parallel parts on the node's CPUs. Results: bench/RESULTS.md section 16.
#
# Stage first (in the repository root; .gpu/ must be git-ignored, e.g. listed in .git/info/exclude):
#   mkdir -p .gpu/whl && cp ../shared/data/micro/{tortuosity_benchmark_500,berea_sandstone_400}.zip .gpu/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .gpu/whl taufactor==1.2.1
# then run `bash bench/gpu_figures.sh` there; $OUT/results.tgz holds every log, results.json, report and figure.
# TauFactor imports IPython only for a notebook helper, so on an image without IPython a stub module stands in.
# env: DEV (cuda|cpu), T (training minutes, default 3), W (work root), ONLY (job names: tau micro calogan ds2 nbody,
#      default all of them; and profile, only when named, which runs first and alone), DEADLINE (s, counted from the
#      start), MICRO_ARGS / NB_ARGS (more options of those benchmarks), SMALL=1 for a local smoke run on CPU (tiny sizes)
set -u
DEV=${DEV:-cuda}; T=${T:-3}; W=${W:-/tmp/g}; OUTD=${OUT:-/tmp/g_out}; SMALL=${SMALL:-0}
mkdir -p "$W" "$OUTD"
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
if [ "$DEV" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl
  mkdir -p /tmp/site/IPython && echo "def clear_output(*a, **k): return None" > /tmp/site/IPython/display.py && : > /tmp/site/IPython/__init__.py
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$W/env.txt" 2>&1
  $PY -c "import torch,numpy;print('torch',torch.__version__,'cuda',torch.version.cuda,torch.cuda.get_device_name(0),'numpy',numpy.__version__)" >> "$W/env.txt" 2>&1
  nproc >> "$W/env.txt"
fi
if [ "$SMALL" = 1 ]; then
  NB_N="--n-per-cosmology 20 --n-eval 20 --omega-m 0.25,0.35 --sigma8 0.7,0.9 --sim-jobs 2"
  MI_N="--n 40 --n-eval 2 --n-tau 1 --tau-axes 0"; TAU_S="64"; NBG=32; CALO_SET="--set train.batch_size=64 --set train.log_every=2 --set train.val_every=4 --set train.ckpt_every=4"
  CG_PARTS=2; CG_PART=300; CG_EVAL=300; DS_PARTS=2; DS_PART=150; DS_EVAL=200
  PROF_ARGS="--n 64 --batch 16 --steps 2 --warmup 1 --top 5"
else
  PROF_ARGS="--n 1024 --steps 10 --warmup 3"
  NB_N="--n-eval 2000 --sim-jobs 8"
  MI_N="--n-eval 16 --n-tau 6"; TAU_S="500"; NBG=128; CALO_SET=""
  CG_PARTS=10; CG_PART=10000; CG_EVAL=10000; DS_PARTS=6; DS_PART=5000; DS_EVAL=5000
fi
start=$(date +%s)
# only when ONLY names it, first and alone on the GPU: where a calorimeter gpu-preset step spends its time (host or
# device), both geometries; it took 383 s on an H200 node with 20 steps each (RESULTS.md section 16), now 10
case " ${ONLY:-} " in *" profile "*)
  $PY -m bench.calo_step_profile --geometry calogan,calochallenge-ds2 --preset gpu --device $DEV $PROF_ARGS --workdir "$W/profile" \
    > "$W/profile.log" 2>&1; echo "exit $? after $(( $(date +%s) - start )) s" >> "$W/profile.log" ;;
esac
run() { # name, command...
  local name=$1; shift
  case " ${ONLY:-tau micro calogan ds2 nbody} " in *" $name "*) ;; *) return 0 ;; esac
  ( "$@" > "$W/$name.log" 2>&1; echo "exit $? after $(( $(date +%s) - start )) s" >> "$W/$name.log" ) &
  PIDS="$PIDS $!"
}
PIDS=""
alive() { local n=0; for p in $PIDS; do kill -0 $p 2>/dev/null && n=$((n+1)); done; echo $n; }
run tau $PY -m bench.tortuosity_benchmark --data .gpu/tortuosity_benchmark_500.zip --sizes $TAU_S --conv-crit 1e-2 --device $DEV
run micro $PY -m bench.micro_benchmark --case berea --crop 64 --berea .gpu/berea_sandstone_400.zip $MI_N --device $DEV --preset default \
  --train-minutes $T --threads 2 --workdir $W/micro --no-extras ${MICRO_ARGS:-}
calo_data() { # dir geometry particle energy nparts npart neval: train (parts merged), eval (seed 2), floor (seed 3) in parallel
  local d=$1 g=$2 pa=$3 en=$4 np=$5 n=$6 ne=$7 pids="" parts=""
  mkdir -p $d
  for i in $(seq 1 $np); do
    OMP_NUM_THREADS=1 $PY -m physgan data make calo --geometry $g --particle $pa --energy $en --n $n --seed $((1000 + i)) --out $d/part$i.h5 > $d/make$i.log 2>&1 &
    pids="$pids $!"; parts="$parts $d/part$i.h5"
  done
  OMP_NUM_THREADS=1 $PY -m physgan data make calo --geometry $g --particle $pa --energy $en --n $ne --seed 2 --out $d/eval.h5 > $d/make_eval.log 2>&1 & pids="$pids $!"
  OMP_NUM_THREADS=1 $PY -m physgan data make calo --geometry $g --particle $pa --energy $en --n $ne --seed 3 --out $d/floor.h5 > $d/make_floor.log 2>&1 & pids="$pids $!"
  for p in $pids; do wait $p || return 1; done
  $PY -c "import sys; from physgan.generate_sharded import merge_shards; merge_shards(sys.argv[1], sys.argv[2:])" $d/train.h5 $parts \
    && rm -f $parts && echo "data made after $(( $(date +%s) - start )) s"
}
run calogan bash -c "$(declare -f calo_data); start=$start PY=$PY; calo_data $W/calogan calogan e+ 1:100 $CG_PARTS $CG_PART $CG_EVAL && \
  $PY -m bench.calo_benchmark --geometry calogan --n-train $((CG_PARTS*CG_PART)) --n-eval $CG_EVAL $CALO_SET --device $DEV --preset gpu --train-minutes $T --threads 6 --workdir $W/calogan"
run ds2 bash -c "$(declare -f calo_data); start=$start PY=$PY; calo_data $W/ds2 calochallenge-ds2 e- 1:1000 $DS_PARTS $DS_PART $DS_EVAL && \
  $PY -m bench.calo_benchmark --geometry calochallenge-ds2 --n-train $((DS_PARTS*DS_PART)) --n-eval $DS_EVAL $CALO_SET --device $DEV --preset gpu --train-minutes $T --threads 4 --workdir $W/ds2"
run nbody $PY -m bench.nbody_benchmark --grid $NBG $NB_N --device $DEV --preset gpu --train-minutes $T --threads 2 --no-pm-speed \
  --checkpoint last --workdir $W/nbody ${NB_ARGS:-}
( while sleep 20; do echo "$(( $(date +%s) - start )) s"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; done ) > "$W/gpu_util.log" 2>&1 &
mon=$!
DEADLINE=${DEADLINE:-440}
while [ $(( $(date +%s) - start )) -lt $DEADLINE ] && [ "$(alive)" -gt 0 ]; do sleep 5; done
kill $mon 2>/dev/null
echo "collected after $(( $(date +%s) - start )) s; still running: $(alive)"
cd "$W" && tar czf "$OUTD/results.tgz" --exclude='*.h5' --exclude='*.pt' --exclude='*.npy' --exclude='*.npz' --exclude='checkpoints' --exclude='*.tif' . 2>/dev/null
ls -la "$OUTD"; tail -n 3 "$W"/*.log
