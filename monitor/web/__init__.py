"""Everything served over HTTP: the JSON API (`monitor.web.api`) and the board and replay
pages with their static files (`monitor.web.board`, `static/`), on one FastAPI app served
in-process by uvicorn. The pages are plain HTML/CSS/ES modules, in Chinese and English, with
no build step.
"""
