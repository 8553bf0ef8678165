// The self-contained HTML report of the whole run; each input is staged into the folder of the output layout
// that `scprospatial report` reads.
process REPORT {
    tag "${meta.id}"
    label 'process_single'

    conda "${moduleDir}/../../../containers/environment.yml"
    container 'ghcr.io/scprospatial/scprospatial:0.1.0'

    input:
    tuple val(meta), path(prepared, stageAs: 'prepared/*')
    path model_files, stageAs: 'model/*'
    path imputed, stageAs: 'imputed/*'
    path graphs, stageAs: 'spatial/*'
    path mapped, stageAs: 'mapped/*'
    path stats, stageAs: 'stats/*'
    path evaluation, stageAs: 'evaluate/*'

    output:
    tuple val(meta), path("report/report.html"), emit: html
    path "versions.yml"                        , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    scprospatial_report.py . --out report/report.html ${args}
    scprospatial versions --process "${task.process}" > versions.yml
    """

    stub:
    """
    mkdir -p report && touch report/report.html
    scprospatial versions --process "${task.process}" > versions.yml
    """
}
