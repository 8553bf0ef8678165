process REPORT {
    tag "report"
    label 'process_single'

    input:
    path prepared, stageAs: 'prepared/*'
    path model_files, stageAs: 'model/*'
    path imputed, stageAs: 'imputed/*'
    path graphs, stageAs: 'spatial/*'
    path mapped, stageAs: 'mapped/*'
    path stats, stageAs: 'stats/*'
    path evaluation, stageAs: 'evaluate/*'

    output:
    path "report/report.html", emit: html
    path "versions.yml"       , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    scprospatial_report.py . --out report/report.html ${args}
    echo "\\"${task.process}\\": {scprospatial: \$(scprospatial --version | cut -d' ' -f2)}" > versions.yml
    """

    stub:
    """
    mkdir -p report && touch report/report.html
    echo "\\"${task.process}\\": {scprospatial: stub}" > versions.yml
    """
}
