#!/bin/bash
# CE2 runs, one model process at a time, from a snapshot of the package.
cd "$(dirname "$0")/../../.."   # the repository root
export PYTHONPATH=$PWD/python   # the runs used a frozen copy of python/ at commit 42a3180
CE="nice -n 5 python -m nntm.ce.app -c cfg/ce/ctc.cfg"
Q='--QPs=-8 -12 -16 -20 -24'
for m in minilm digits mtcnn mobilenetv2; do
  $CE --Anchor=cfg/encoder_anchor.cfg --Test=cfg/encoder_anchor.cfg,cfg/ce/tool_cluster.cfg --TestName=NNTM-cluster --Models=$m "$Q" --ResultsDir=results/ce2 --Name=CE2_$m > results/ce2/$m.log 2>&1
done
# outlier separation alone, clustering forced, 16 entries
for m in minilm mtcnn; do
  $CE --Anchor=cfg/encoder_anchor.cfg,cfg/ce/tool_cluster.cfg --AnchorOptions="Cluster=2;ClusterSizes=16;ClusterOutliers=0" --AnchorName=cluster16-no-outliers \
      --Test=cfg/encoder_anchor.cfg,cfg/ce/tool_cluster.cfg --TestOptions="Cluster=2;ClusterSizes=16;ClusterOutliers=1" --TestName=cluster16-outliers \
      --Models=$m "$Q" --ResultsDir=results/ce2 --Name=CE2_outliers_$m > results/ce2/outliers_$m.log 2>&1
done
# clustering forced on every tensor (the tool's own curve)
$CE --Anchor=cfg/encoder_anchor.cfg --Test=cfg/encoder_anchor.cfg,cfg/ce/tool_cluster.cfg --TestOptions="Cluster=2" --TestName=NNTM-cluster-forced --Models=minilm "$Q" --ResultsDir=results/ce2 --Name=CE2_forced_minilm > results/ce2/forced_minilm.log 2>&1
echo done > results/ce2/ALL_DONE
