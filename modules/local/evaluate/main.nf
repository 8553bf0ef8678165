// Benchmark of the model against the baselines on held-out cells of the CITE-seq cohorts (off by default).
process EVALUATE {
    tag "evaluate"
    label 'process_gpu'

    input:
    path cohorts, stageAs: 'cohorts/*'

    output:
    path "evaluate/*"   , emit: files
    path "versions.yml" , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    scprospatial_evaluate.py ${cohorts} --outdir evaluate --threads ${task.cpus} --device ${task.accelerator ? 'cuda' : 'cpu'} ${args}
    echo "\\"${task.process}\\": {scprospatial: \$(scprospatial --version | cut -d' ' -f2)}" > versions.yml
    """

    stub:
    """
    mkdir -p evaluate && touch evaluate/summary.csv evaluate/summary.md
    echo "\\"${task.process}\\": {scprospatial: stub}" > versions.yml
    """
}
