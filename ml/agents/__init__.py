"""The 37 agents of the paper on top of SpineFM, and the pipeline that chains them.

Data flow: ``StudyData`` (ml.data) -> ``embed_study`` (SpineFM, once) -> diagnosis (17) ->
localization (17) -> retrieval (2) -> Medical Report Agent -> ``StudyAnalysis`` (analysis.py),
which is the JSON contract with the review app.
"""
