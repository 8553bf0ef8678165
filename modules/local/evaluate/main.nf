// Benchmark of the model against the baselines on held-out cells of the CITE-seq cohorts (off by default).
process EVALUATE {
    tag "${meta.id}"
    label 'process_gpu'

    conda "${moduleDir}/../../../containers/environment.yml"
    // tasks given a GPU (profile gpu) run the CUDA image, built from the same install; others the CPU image
    container "${task.accelerator ? 'ghcr.io/scprospatial/scprospatial:0.1.0-cuda' : 'ghcr.io/scprospatial/scprospatial:0.1.0'}"

    input:
    tuple val(meta), path(cohorts, stageAs: 'cohorts/*')

    output:
    tuple val(meta), path("evaluate/*"), emit: files
    path "versions.yml"                , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    scprospatial_evaluate.py ${cohorts} --outdir evaluate --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    """
    mkdir -p evaluate && touch evaluate/summary.csv evaluate/summary.md
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
