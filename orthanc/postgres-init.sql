-- Orthanc's index lives in its own database next to the app's (same server).
CREATE DATABASE orthanc OWNER spinereview;
